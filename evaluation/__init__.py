"""Evaluation of voices: a package of its own above what it evaluates (``model``, ``export``,
``service``), never imported by them.

- ``parawave eval`` (:mod:`evaluation.cli`) scores a shipped ONNX voice bundle on a corpus split:
  :mod:`.metrics` (ASR WER, PESQ, STOI, MCD, durations), :mod:`.clips` (which clips, per-clip
  results), :mod:`.copy_synthesis`, :mod:`.run` (one clip and the whole run), :mod:`.report`
  (aggregation, targets, markdown), :mod:`.plots`, :mod:`.voices` (loading through the service's
  loader) and :mod:`.voicing` (HNR, F0 error).
- Research scripts on top of them: :mod:`.copy_ab` (PyTorch checkpoints A/B), :mod:`.curve` (the
  teacher's learning curve), :mod:`.runs_curves`, :mod:`.say_it_right`, :mod:`.timestamps`.
"""
