"""Monotonic alignment search against brute force, the aligner's losses and prior."""

import itertools

import numpy as np
import pytest
import torch

from model import align
from model.align import Aligner, beta_binomial_log_prior, forward_sum_loss, maximum_path

IMPLS = [False, True] if align.HAVE_NUMBA else [False]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def brute_force_best(value: np.ndarray) -> float:
    """Best total over every monotonic path (start at phoneme 0, end at L-1, steps 0/1)."""
    F, L = value.shape
    best = -np.inf
    for steps in itertools.combinations(range(1, F), L - 1):  # frames where the phoneme advances
        j, total = 0, value[0, 0]
        for i in range(1, F):
            j += i in steps
            total += value[i, j]
        best = max(best, total)
    return best


def check_path(path: np.ndarray, n_text: int, n_frames: int) -> None:
    assert path[n_frames:].sum() == 0 and path[:, n_text:].sum() == 0
    p = path[:n_frames, :n_text]
    assert (p.sum(1) == 1).all(), "every frame belongs to exactly one phoneme"
    j = p.argmax(1)
    assert j[0] == 0 and j[-1] == n_text - 1
    assert set(np.diff(j)) <= {0, 1}, "monotonic, no skipped phoneme"
    assert (p.sum(0) >= 1).all() and p.sum() == n_frames


@pytest.mark.parametrize("use_numba", IMPLS)
def test_mas_matches_brute_force(use_numba):
    rng = np.random.default_rng(0)
    for _ in range(30):
        L = int(rng.integers(1, 5))
        F = int(rng.integers(L, 9))
        value = np.log(rng.dirichlet(np.ones(L), size=F))  # (F, L) log attention rows
        path = maximum_path(value[None], np.array([L]), np.array([F]), use_numba=use_numba)[0]
        check_path(path, L, F)
        assert (path * value).sum() == pytest.approx(brute_force_best(value), abs=1e-9)


@pytest.mark.parametrize("use_numba", IMPLS)
def test_mas_padded_batch_matches_single_items(use_numba):
    rng = np.random.default_rng(1)
    B, Fm, Lm = 6, 40, 12
    text_lens = rng.integers(1, Lm + 1, size=B)
    mel_lens = np.maximum(text_lens, rng.integers(1, Fm + 1, size=B))
    value = rng.normal(size=(B, Fm, Lm))
    batch = maximum_path(value, text_lens, mel_lens, use_numba=use_numba)
    for b in range(B):
        T, N = mel_lens[b], text_lens[b]
        single = maximum_path(value[b : b + 1, :T, :N], [N], [T], use_numba=use_numba)[0]
        np.testing.assert_array_equal(batch[b, :T, :N], single)
        check_path(batch[b], N, T)


@pytest.mark.skipif(not align.HAVE_NUMBA, reason="numba not installed")
def test_numpy_fallback_agrees_with_numba():
    rng = np.random.default_rng(2)
    B, Fm, Lm = 4, 120, 30
    text_lens = rng.integers(5, Lm + 1, size=B)
    mel_lens = rng.integers(Lm, Fm + 1, size=B)
    value = rng.normal(size=(B, Fm, Lm))
    a = maximum_path(value, text_lens, mel_lens, use_numba=False)
    b = maximum_path(value, text_lens, mel_lens, use_numba=True)
    np.testing.assert_array_equal(a, b)


def test_fewer_frames_than_phonemes_still_covers_every_frame():
    value = np.zeros((1, 3, 5))
    path = maximum_path(value, [5], [3])[0]
    assert (path.sum(1) == 1).all() and path.sum() == 3
    assert (np.diff(path.argmax(1)) >= 0).all()


def test_bad_lengths_rejected():
    with pytest.raises(ValueError):
        maximum_path(np.zeros((1, 4, 3)), [0], [4])
    with pytest.raises(ValueError):
        maximum_path(np.zeros((1, 4, 3)), [3], [5])


def test_prior_is_a_distribution_peaking_on_the_diagonal():
    text_lens, mel_lens = torch.tensor([6, 3]), torch.tensor([30, 12])
    logp = beta_binomial_log_prior(text_lens, mel_lens, 30, 6)  # (2, 30, 6)
    p = logp.exp()
    torch.testing.assert_close(p[0].sum(1), torch.ones(30))
    torch.testing.assert_close(p[1, :12, :3].sum(1), torch.ones(12))
    assert p[0, 0].argmax() == 0 and p[0, 29].argmax() == 5
    assert p[0, 15].argmax() in (2, 3)


def test_forward_sum_loss_prefers_monotonic_alignment():
    L, F = 5, 20
    diag = torch.full((1, F, L), -8.0)
    for i in range(F):
        diag[0, i, i * L // F] = 8.0
    reverse = diag.flip(2)  # last phoneme first: not a monotonic path through 1..L
    lens, flens = torch.tensor([L]), torch.tensor([F])
    good, bad = forward_sum_loss(diag, lens, flens), forward_sum_loss(reverse, lens, flens)
    assert torch.isfinite(good) and torch.isfinite(bad)
    assert good < 0.1 < bad


def test_forward_sum_loss_trains_an_aligner_on_a_toy():
    """Mel frames are noisy per-phoneme patterns held for random durations: the loss drops within a
    few steps, and after training the hard alignment recovers the true durations."""
    torch.manual_seed(0)
    B, L, D, n_mels, V = 8, 8, 16, 20, 20
    patterns = torch.randn(V, n_mels) * 2
    embed = torch.nn.Embedding(V, D)
    aligner = Aligner(D, n_mels, 16, temperature=1.0)
    opt = torch.optim.Adam([*embed.parameters(), *aligner.parameters()], lr=3e-3)
    lens, mask = torch.full((B,), L), torch.ones(B, L, dtype=torch.bool)

    def toy_batch():
        ids = torch.stack([torch.randperm(V)[:L] for _ in range(B)])  # (B, L)
        dur = torch.randint(2, 9, (B, L))  # (B, L)
        flens = dur.sum(1)
        mel = torch.zeros(B, int(flens.max()), n_mels)
        for b in range(B):
            frames = torch.repeat_interleave(ids[b], dur[b])
            mel[b, : len(frames)] = patterns[frames] + 0.3 * torch.randn(len(frames), n_mels)
        return ids, dur, flens, mel.transpose(1, 2)  # mel (B, n_mels, F)

    losses, errors = [], []
    for step in range(200):
        ids, dur, flens, mel = toy_batch()
        prior = beta_binomial_log_prior(lens, flens, mel.shape[2], L)
        logits, soft, log_soft = aligner(embed(ids).transpose(1, 2), mel, mask, prior)
        torch.testing.assert_close(soft.sum(2), torch.ones(B, mel.shape[2]))
        loss = forward_sum_loss(logits, lens, flens)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step >= 190:
            hard = maximum_path(log_soft.detach().numpy(), lens.numpy(), flens.numpy())
            errors.append(np.abs(hard.sum(1).astype(np.int64) - dur.numpy()).mean())
    assert losses[5] < losses[0] and np.mean(losses[-10:]) < 0.4 * np.mean(losses[:10])
    assert np.mean(errors) < 0.5, errors
