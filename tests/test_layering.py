"""The layering of docs/architecture.md, read from the source (every ``import``, function-level and
``TYPE_CHECKING`` ones included), bottom to top:

    core -> model/text -> { model (numerics, data, models) -> model/train ;  service (the torch-free
         runtime) } -> export (model below the trainers + service) -> evaluation -> bench
         (tests may import anything)

A layer imports only layers below it; model/ and service/ stand side by side (neither imports the
other, beyond the text front end that both use). Each rule below is one sentence of that picture; each is
shown to fail on a planted bad import (``test_each_rule_catches_a_bad_import``), and the few
places that break a rule today are named in ``ALLOWED`` with the reason (an entry that is no longer
needed fails ``test_every_allowance_is_still_needed``, so the list only shrinks)."""

from __future__ import annotations

import ast
import dataclasses
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "model", "export", "service", "evaluation", "bench")  # the project's own, bottom to top
OTHERS = ("tests",)  # importable from the repository root, never by the packages


# ------------------------------------------------------------------------------------- reading


def module_name(rel: str) -> str:
    """'model/text/__init__.py' -> 'model.text'; 'service/app.py' -> 'service.app'."""
    parts = list(Path(rel).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def raw_imports(
    source: str, module: str, is_package: bool, path: str = "<source>"
) -> list[tuple[str, str, int]]:
    """(name, fallback, line) of every import anywhere in ``source`` (module level, in functions,
    under ``if TYPE_CHECKING:``): ``import a.b`` -> ('a.b', 'a.b'); ``from a import b`` -> ('a.b',
    'a'): module a.b if there is one, else a name defined in a. Relative imports made absolute."""
    out: list[tuple[str, str, int]] = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            out.extend((alias.name, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            out.extend((f"{base}.{alias.name}", base, node.lineno) for alias in node.names)
    return out


@dataclass(frozen=True)
class Tree:
    """The project's modules and what each imports, resolved to the project's modules where the
    name is one (``from model.text import normalize`` -> ``model.text.normalize`` when that is a
    module, else ``model.text``); other names (torch, numpy, ...) are kept as written."""

    imports: Mapping[str, tuple[tuple[str, int], ...]]  # module -> (imported module, line)
    paths: Mapping[str, str]  # module -> path relative to the root

    @classmethod
    def from_sources(cls, sources: Mapping[str, str]) -> Tree:
        modules = {module_name(rel): rel for rel in sources}
        imports = {}
        for mod, rel in modules.items():
            found: set[tuple[str, int]] = set()
            for name, fallback, line in raw_imports(sources[rel], mod, rel.endswith("__init__.py"), rel):
                resolved = name if name in modules else resolve(fallback, modules)
                if resolved != mod:
                    found.add((resolved, line))
            imports[mod] = tuple(sorted(found))
        return cls(imports, modules)


def resolve(name: str, modules: Mapping[str, str]) -> str:
    """A name of the project's packages -> the longest prefix that is one of its modules (the
    name itself when none is: a module that does not exist is still seen by the rules); other
    names (torch, numpy.fft, ...) as they are."""
    if name.split(".")[0] in PACKAGES + OTHERS:
        parts = name.split(".")
        for k in range(len(parts), 0, -1):
            if ".".join(parts[:k]) in modules:
                return ".".join(parts[:k])
    return name


def read_tree(root: Path = ROOT) -> Tree:
    sources = {}
    for top in PACKAGES + OTHERS:
        for p in sorted((root / top).rglob("*.py")):
            sources[str(p.relative_to(root))] = p.read_text(encoding="utf-8")
    return Tree.from_sources(sources)


def under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


# ------------------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class Rule:
    id: str  # short, for the test ids and ALLOWED
    name: str
    layer: tuple[str, ...]  # the importing modules the rule is about (module prefixes)
    bad: Callable[[str], bool]  # imported module -> breaks the rule
    example: tuple[str, str]  # (importer, imported) that breaks it: the rule's own failure test
    exempt: tuple[str, ...] = ()  # prefixes inside the layer that another rule covers

    def applies_to(self, module: str) -> bool:
        return under(module, *self.layer) and not (self.exempt and under(module, *self.exempt))


def not_stdlib_or(*allowed: str) -> Callable[[str], bool]:
    def bad(m: str) -> bool:
        return m.split(".")[0] not in sys.stdlib_module_names and not under(m, *allowed)

    return bad


ABOVE_MODEL = ("export", "service", "evaluation", "bench", "tests")

RULES = (
    Rule(
        "core",
        "core imports nothing of the project, and nothing beyond the standard library and numpy",
        ("core",),
        not_stdlib_or("core", "numpy"),
        ("core.limits", "torch"),
    ),
    Rule(
        "model-text",
        "model/text is torch-free and imports only core",
        ("model.text",),
        lambda m: under(m, "torch") or (under(m, *PACKAGES, *OTHERS) and not under(m, "core", "model.text")),
        ("model.text.normalize", "model.data.features"),
    ),
    Rule(
        "model",
        "model/ (numerics, data, models, trainers) imports none of export/service/evaluation/bench/tests",
        ("model",),
        lambda m: under(m, *ABOVE_MODEL),
        ("model.acoustic", "service.types"),
    ),
    Rule(
        "model-below-train",
        "model/ below the trainers (inference, data, checkpoints) never imports model/train",
        ("model",),
        lambda m: under(m, "model.train"),
        ("model.checkpoint", "model.train.config"),
        exempt=("model.train",),
    ),
    Rule(
        "export",
        "export/ (torch models -> the runtime's graphs and bundle) imports neither model/train nor "
        "evaluation/bench/tests",
        ("export",),
        lambda m: under(m, "model.train", "evaluation", "bench", "tests"),
        ("export.onnx", "model.train.loop"),
    ),
    Rule(
        "service",
        "service/ imports neither torch, nor model/ beyond model/text, nor export/evaluation/bench/tests",
        ("service",),
        lambda m: (
            under(m, "torch", "export", "evaluation", "bench", "tests")
            or (under(m, "model") and not under(m, "model.text"))
        ),
        ("service.engine", "model.acoustic"),
    ),
    Rule(
        "evaluation",
        "evaluation/ imports neither bench/ nor tests/",
        ("evaluation",),
        lambda m: under(m, "bench", "tests"),
        ("evaluation.run", "tests.service.fake_engine"),
    ),
)
RULE_IDS = [r.id for r in RULES]


@dataclass(frozen=True)
class Allowed:
    """Imports that break a rule today, and why: from modules under ``importer`` to modules under
    one of ``imported`` (module prefixes; with ``exact``, those modules only, not what is below
    them). Meant to go: each entry names the work that removes it."""

    rule: str  # the rule's id
    importer: str
    imported: tuple[str, ...]
    reason: str
    exact: bool = False

    def covers(self, importer: str, imported: str) -> bool:
        if not under(importer, self.importer):
            return False
        return imported in self.imported if self.exact else under(imported, *self.imported)


ALLOWED: tuple[Allowed, ...] = ()  # nothing breaks a rule today; an entry here names the work that removes it


def violations(tree: Tree, rule: Rule, allowed: Iterable[Allowed] = ALLOWED) -> list[str]:
    """'path:line importer -> imported' for every import of ``tree`` that breaks ``rule`` and no
    allowance covers."""
    mine = [a for a in allowed if a.rule == rule.id]
    out = []
    for mod, imported in tree.imports.items():
        if not rule.applies_to(mod):
            continue
        for m, line in imported:
            if rule.bad(m) and not any(a.covers(mod, m) for a in mine):
                out.append(f"{tree.paths[mod]}:{line} {mod} -> {m}")
    return out


def cycles(tree: Tree) -> list[list[str]]:
    """The import cycles among the project's modules: each strongly connected component of more than
    one module (Tarjan's algorithm), sorted."""
    graph = {m: sorted({i for i, _ in imps if i in tree.imports}) for m, imps in tree.imports.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is the longest import chain: small
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


# import cycles known today, each with the work that removes it (an entry no longer needed fails)
ALLOWED_CYCLES: dict[frozenset[str], str] = {}  # none today


# ------------------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def tree() -> Tree:
    return read_tree()


@pytest.mark.parametrize("rule", RULES, ids=RULE_IDS)
def test_rule_holds(tree, rule):
    assert violations(tree, rule) == [], rule.name


def test_no_import_cycles(tree):
    unexplained = [c for c in cycles(tree) if frozenset(c) not in ALLOWED_CYCLES]
    assert unexplained == []


@pytest.mark.parametrize("rule", RULES, ids=RULE_IDS)
def test_each_rule_catches_a_bad_import(tree, rule):
    """The rule's example, planted in a copy of the real tree as a function-level import, is found."""
    importer, imported = rule.example
    assert rule.applies_to(importer) and rule.bad(imported)
    source = f"def f():\n    import {imported}\n"
    planted = Tree.from_sources(
        {**{tree.paths[m]: "" for m in tree.paths}, f"{importer.replace('.', '/')}_x.py": source}
    )
    assert any(f"{importer}_x -> {imported}" in v for v in violations(planted, rule, allowed=()))


def test_cycles_are_found_through_function_level_and_from_imports():
    tree = Tree.from_sources(
        {
            "model/a.py": "from model.b import thing\n",
            "model/b.py": "def f():\n    from model import c\n",
            "model/c.py": "import model.a\n",
            "model/d.py": "import model.a\n",
            "model/e/__init__.py": "from .f import g\n",
            "model/e/f.py": "from model.e import h\n",
        }
    )
    assert cycles(tree) == [["model.a", "model.b", "model.c"], ["model.e", "model.e.f"]]


def test_relative_and_attribute_imports_resolve_to_modules():
    tree = Tree.from_sources(
        {
            "service/x/__init__.py": "from . import y\nfrom .y import func\n",
            "service/x/y.py": "from ..z import Thing\nimport numpy as np\n",
            "service/z.py": "",
        }
    )
    assert {m for m, _ in tree.imports["service.x"]} == {"service.x.y"}
    assert {m for m, _ in tree.imports["service.x.y"]} == {"numpy", "service.z"}


def test_every_allowance_is_still_needed(tree):
    """Each module an allowance names still carries an import it excuses; each known cycle is still there."""
    assert {a.rule for a in ALLOWED} <= set(RULE_IDS), "every allowance names a rule"
    stale = []
    for a in ALLOWED:
        rule = next(r for r in RULES if r.id == a.rule)
        for name in a.imported:
            narrower = dataclasses.replace(a, imported=tuple(x for x in a.imported if x != name))
            others = [narrower if b is a else b for b in ALLOWED]
            if violations(tree, rule, others) == violations(tree, rule):
                stale.append(f"{a.rule}: {a.importer} -> {name}")
    assert stale == []
    assert [sorted(c) for c in ALLOWED_CYCLES if sorted(c) not in cycles(tree)] == []
