"""Fixtures shared by every test folder.

- ``one_thread``: torch on one intra-op thread for a module (``pytestmark =
  pytest.mark.usefixtures("one_thread")``); torch is imported only when a module asks for it.
- ``python_without``: run Python code in a fresh interpreter where some packages cannot be
  imported (torch, the text front end's, ...), to show what works without them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest

_BLOCKER = """import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {blocked!r}):
            raise ImportError(f"{{name}} blocked for this test")
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared CPU: one intra-op thread is many times faster than oversubscribed ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def python_without() -> Callable[..., subprocess.CompletedProcess]:
    """python_without(code, blocked=("torch",), timeout=120): ``code`` run by ``sys.executable -c``
    with every module in ``blocked`` (and its submodules) made unimportable."""

    def run(
        code: str, blocked: Sequence[str] = ("torch",), timeout: float = 120
    ) -> subprocess.CompletedProcess:
        program = _BLOCKER.format(blocked=tuple(blocked)) + code
        return subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout
        )

    return run
