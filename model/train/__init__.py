"""Trainers (teacher, student, acoustic model) and the infrastructure they share (``common``)."""
