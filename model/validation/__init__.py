"""The trainers' validation numbers, also runnable on a checkpoint: the teacher's NLL on fixed
windows by frame class (:mod:`model.validation.nll`) and the aligner's phone boundaries against
the renderer's (:mod:`model.validation.alignment`). PyTorch-level, below the trainers; the
evaluation of a shipped voice bundle is the top-level ``evaluation`` package."""
