"""The student's noise scale on copy synthesis (issue 37: "measure the student's z temperature"):
``python -m bench.student_temperature --data data/flite CKPT [--limit 12] [--temperatures 1.0 0.9 0.8]``.

The student maps z ~ N(0, 1) through its flows; sampling z at a temperature t (z * t) trades noise
for periodicity. Every temperature vocodes the first ``--limit`` test clips per speaker from the
recording's log-mel and F0 with the same z per clip (``evaluation.copy_ab``), and the table
shows PESQ-WB, STOI, HNR, F0 and voicing error per temperature beside the recordings' HNR. Prints
the markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path


class _Tempered:
    """A student whose noise is scaled by ``t`` (the rest of copy synthesis sees a student)."""

    def __init__(self, student, t: float):
        self.student, self.t, self.cfg = student, t, student.cfg

    def __call__(self, z, *args, **kwargs):  # z: (B, T)
        return self.student(z * self.t, *args, **kwargs)


def main(argv: list[str] | None = None) -> None:
    import torch

    from evaluation.copy_ab import copy_metrics, first_clips, markdown
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.student import student_from_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a student checkpoint")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=12, help="clips per speaker")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7, 0.6])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)  # weights + config + step
    if ckpt.get("kind") != "student":
        p.error(f"{args.checkpoint}: not a student checkpoint (kind {ckpt.get('kind')!r})")
    cfg = AudioConfig.from_dict(ckpt["config"]["audio"])
    speakers = {s: i for i, s in enumerate(ckpt["config"]["data"]["speakers"])}
    student = student_from_checkpoint(ckpt)
    corpus = Corpus(args.data)
    models = {f"z x {t:g}": (_Tempered(student, t), speakers) for t in args.temperatures}
    ids = first_clips(corpus, args.split, args.limit)
    print(markdown(copy_metrics(models, corpus, ids, cfg, args.seed)))  # the report is the output


if __name__ == "__main__":
    main()
