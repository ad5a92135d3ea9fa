"""Torch-free code that training (``model/``) and serving (``service/``) share: facts and numerics
both sides must agree on, with no dependency beyond numpy. It imports nothing else of the project;
every other package may import it (docs/architecture.md)."""
