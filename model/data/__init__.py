"""Corpora (render, ingest), mel features and datasets."""
