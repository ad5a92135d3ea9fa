"""Benchmarks: the measurements behind the project's choices, run as ``python -m bench.<name>``.

Not part of the distribution (pyproject's packages stop at core/model/export/service): a benchmark
may import any layer. Results worth keeping go to ``bench/results/``.
"""
