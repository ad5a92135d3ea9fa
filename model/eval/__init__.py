"""Evaluation of trained models (alignment checks, durations, ...)."""
