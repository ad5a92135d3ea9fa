"""Trainers (teacher, student, acoustic model) and what they share: the setup (``setup``), the
loop (``loop``), the task bases (``task``), configs and ``--set`` (``config``), the run folder
(``rundir``), data loaders, optimiser and EMA, precision, samples, DDP."""
