"""parawave runtime: torch-free inference engine, HTTP server and CLI."""

__version__ = "0.1.0"
