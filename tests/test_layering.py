"""Import layering, read from the source (function-level imports included): inference and export
read checkpoints through ``model.checkpoint``, never the trainers; the runtime never imports torch or
``model`` beyond ``model.text``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def files(*patterns: str) -> list[Path]:
    found = sorted({p for pattern in patterns for p in ROOT.glob(pattern)})
    assert found, patterns
    return found


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


INFERENCE_AND_EXPORT = (
    "model/synth.py",
    "model/acoustic.py",
    "model/teacher.py",
    "model/student.py",
    "model/checkpoint.py",
    "model/eval/*.py",
    "model/data/*.py",
    "export/*.py",
    "service/**/*.py",
)


def test_inference_and_export_do_not_import_the_trainers():
    bad = {
        str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if under(m, "model.train"))
        for p in files(*INFERENCE_AND_EXPORT)
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_runtime_imports_neither_torch_nor_the_model_beyond_its_text_front_end():
    bad = {
        str(p.relative_to(ROOT)): sorted(
            m
            for m in imported_modules(p)
            if under(m, "torch") or (under(m, "model") and not under(m, "model.text"))
        )
        for p in files("service/**/*.py")
    }
    assert {k: v for k, v in bad.items() if v} == {}
