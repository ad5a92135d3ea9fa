"""Benchmarks and synthetic fixtures for the models (``python -m model.bench.<name>``)."""
