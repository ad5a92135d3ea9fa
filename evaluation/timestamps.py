"""Word-timestamp accuracy against an independent aligner (a benchmark, not a test).

    python -m evaluation.timestamps --voices voices --text ../shared/corpus/ljspeech-text/test.txt \
        --per-speaker 40 --speeds 1.0,1.5 --out recipes/reports/word-timestamps

For each of ``--per-speaker`` test lines per speaker (different lines for each speaker: the first
block of lines to the first speaker, the next to the second, ...) and each speed, the served student
speaks the line through ``OnnxEngine.synthesize`` with ``timestamps=True``, exactly as the API does,
and the returned audio is force-aligned by pocketsphinx 5 (``Decoder.set_align_text``: Viterbi
alignment of the known word sequence with its bundled en-us acoustic model and CMU dictionary, 10 ms
frames). The words given to the aligner are our normalized words (``model.text.wordmap``'s
``spoken`` words of each written token), so both sides cut the audio into the same words; a word the
CMU dictionary lacks is added with its espeak phonemes mapped to ARPAbet (:func:`arpabet`). A
written token's start is its first spoken word's start; the error is ours minus the aligner's.

Writes ``timestamps.json`` under ``--out``: per speed the median, 95th percentile, mean and median
signed error (bias) of the start and end errors, the start errors per speaker, and the 25 words with
the largest start errors (``--rows``: every word).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FRAME_S = 0.01  # pocketsphinx's frame shift

# espeak-ng en-us IPA -> ARPAbet (longest first); stress marks are dropped before matching
_IPA_ARPABET = sorted(
    {
        "aɪ": "AY", "aʊ": "AW", "eɪ": "EY", "oʊ": "OW", "ɔɪ": "OY", "iː": "IY", "uː": "UW", "ɑː": "AA",
        "ɔː": "AO", "ɜː": "ER", "tʃ": "CH", "dʒ": "JH", "n̩": "AH N", "l̩": "AH L", "i": "IY", "ɪ": "IH",
        "ᵻ": "IH", "ɛ": "EH", "æ": "AE", "ɑ": "AA", "ɒ": "AA", "ɔ": "AO", "o": "OW", "ʊ": "UH", "u": "UW",
        "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ɚ": "ER", "ɝ": "ER", "a": "AA", "e": "EH", "p": "P", "b": "B",
        "t": "T", "d": "D", "k": "K", "ɡ": "G", "g": "G", "f": "F", "v": "V", "θ": "TH", "ð": "DH",
        "s": "S", "z": "Z", "ʃ": "SH", "ʒ": "ZH", "h": "HH", "m": "M", "n": "N", "ŋ": "NG", "l": "L",
        "ɹ": "R", "r": "R", "w": "W", "j": "Y", "ɾ": "T", "ʔ": "T", "x": "K", "ç": "HH",
    }.items(),
    key=lambda kv: -len(kv[0]),
)  # fmt: skip


def arpabet(ipa: str) -> str:
    """espeak's IPA for one word -> ARPAbet phones for the pocketsphinx dictionary."""
    s = re.sub("[ˈˌ ]", "", ipa).replace("ː", "ː")
    out, i = [], 0
    while i < len(s):
        for k, v in _IPA_ARPABET:
            if s.startswith(k, i):
                out.append(v)
                i += len(k)
                break
        else:
            i += 1  # a length mark or diacritic with nothing of its own
    return " ".join(out)


def _aligner_word(w: str) -> list[str]:
    """A spoken word as the CMU dictionary writes words: lower case, hyphens apart."""
    return [x for x in re.split(r"[-\s]+", re.sub(r"[^a-z' -]", "", w.lower())) if x.strip("'")]


def _decoder():
    from pocketsphinx import Config, Decoder

    return Decoder(Config(loglevel="FATAL"))


def align(dec, pcm: np.ndarray, words: list[str]) -> list[tuple[str, float, float]]:
    """pocketsphinx forced alignment: (word, start s, end s) of each word, in order."""
    from model.text.wordmap import phonemize_words

    missing = sorted({w for w in words if dec.lookup_word(w) is None})
    for w, ipa in zip(missing, phonemize_words(missing), strict=True):
        phones = arpabet(ipa)
        if phones:
            dec.add_word(w, phones, True)
    dec.set_align_text(" ".join(words))
    dec.reinit_feat()
    dec.start_utt()
    dec.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
    dec.end_utt()
    out = []
    for seg in dec.seg():
        word = re.sub(r"\(\d+\)$", "", seg.word)
        if word.startswith("<") or word.startswith("[") or word == "(NULL)":
            continue
        out.append((word, seg.start_frame * FRAME_S, (seg.end_frame + 1) * FRAME_S))
    return out


def measure_line(engine, dec, text: str, speaker: str, speed: float, voice: str, seed: int = 0) -> list[dict]:
    """One line spoken and aligned: a row per written token (ours and the aligner's times)."""
    from model.text.frontend import prepare_text
    from model.text.wordmap import word_spans
    from service.timing import Timeline
    from service.types import SynthesisRequest

    v = engine.voice(voice)
    spoken: list[tuple[str, ...]] = []
    for s in prepare_text(text, v.symbols):
        spoken.extend(w.spoken for w in word_spans(text, s.span, s.normalized, s.phonemes))
    timeline, audio = Timeline(), []
    for chunk in engine.synthesize(SynthesisRequest(text, voice, speaker, speed, seed=seed, timestamps=True)):
        timeline.add(chunk)
        audio.append(chunk.audio)
    words = timeline.words
    if len(words) != len(spoken):
        raise RuntimeError(f"{len(words)} timed words for {len(spoken)} mapped tokens")
    x = np.concatenate(audio)
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)  # the voice is 16 kHz, as the aligner
    first_of, flat = [], []
    for sp in spoken:
        parts = [p for w in sp for p in _aligner_word(w)]
        first_of.append(len(flat) if parts else None)
        flat.extend(parts)
    segs = align(dec, pcm, flat)
    if [w for w, _, _ in segs] != flat:
        raise RuntimeError("the aligner's words differ from the text's")
    last_of = [
        None if f is None else f + len([p for w in sp for p in _aligner_word(w)]) - 1
        for f, sp in zip(first_of, spoken, strict=True)
    ]
    rows = []
    for w, f, last in zip(words, first_of, last_of, strict=True):
        if f is None:
            continue
        rows.append(
            {
                "word": w.word,
                "start": round(w.start, 4),
                "end": round(w.end, 4),
                "aligner_start": round(segs[f][1], 4),
                "aligner_end": round(segs[last][2], 4),
            }
        )
    return rows


def _stats(errors_ms: np.ndarray) -> dict:
    a = np.abs(errors_ms)
    return {
        "n": len(a),
        "median_ms": round(float(np.median(a)), 1),
        "p95_ms": round(float(np.percentile(a, 95)), 1),
        "mean_ms": round(float(a.mean()), 1),
        "bias_ms": round(float(np.median(errors_ms)), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voices", default="voices")
    p.add_argument("--voice", default=None, help="bundle name [default: the first]")
    p.add_argument("--text", default="../shared/corpus/ljspeech-text/test.txt", help="LJSpeech id|text lines")
    p.add_argument("--per-speaker", type=int, default=40)
    p.add_argument("--speeds", default="1.0,1.5")
    p.add_argument("--out", default="recipes/reports/word-timestamps")
    p.add_argument(
        "--rows", action="store_true", help="keep every word's times (else the 25 worst per speed)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from evaluation.voices import find_bundle, load_voice

    engine, info = load_voice(find_bundle(args.voice, Path(args.voices)), "cpu")
    lines = [ln.split("|", 1)[-1].strip() for ln in Path(args.text).read_text().splitlines() if ln.strip()]
    n = args.per_speaker
    jobs = [(spk, lines[k * n + i]) for k, spk in enumerate(info.speakers) for i in range(n)]
    speeds = [float(s) for s in args.speeds.split(",")]
    dec = _decoder()
    results: dict = {"voice": info.name, "text": args.text, "per_speaker": n, "speeds": {}, "failed": []}
    t0 = time.perf_counter()
    for speed in speeds:
        rows = []
        for spk, text in jobs:
            try:
                got = measure_line(engine, dec, text, spk, speed, info.name)
            except RuntimeError as exc:
                results["failed"].append({"speed": speed, "speaker": spk, "text": text, "why": str(exc)})
                log.warning("speed %s %s: %s (%s)", speed, spk, exc, text[:60])
                continue
            rows.extend({**r, "speaker": spk} for r in got)
        start = np.array([(r["start"] - r["aligner_start"]) * 1000 for r in rows])
        end = np.array([(r["end"] - r["aligner_end"]) * 1000 for r in rows])
        per_speaker = {
            spk: _stats(
                np.array([(r["start"] - r["aligner_start"]) * 1000 for r in rows if r["speaker"] == spk])
            )
            for spk in info.speakers
        }
        results["speeds"][str(speed)] = {
            "start": _stats(start),
            "end": _stats(end),
            "start_per_speaker": per_speaker,
            "rows": rows,
        }
        log.info("speed %s: start %s, end %s", speed, _stats(start), _stats(end))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.rows:
        for r in results["speeds"].values():
            r["rows"] = sorted(r["rows"], key=lambda x: -abs(x["start"] - x["aligner_start"]))[:25]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "timestamps.json").write_text(json.dumps(results, indent=1))
    summary = {s: {k: v for k, v in r.items() if k != "rows"} for s, r in results["speeds"].items()}
    print(
        json.dumps(
            {"summary": summary, "failed": len(results["failed"]), "seconds": results["seconds"]}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
