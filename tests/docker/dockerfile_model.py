"""A small reader for our Dockerfiles (no Docker engine needed): stages, ENV, COPY, CMD/ENTRYPOINT,
HEALTHCHECK, USER, as the builder would see them.

Only the instruction forms our images use are supported (exec-form CMD/ENTRYPOINT/HEALTHCHECK,
``ENV key=value ...``); anything else in those positions raises, so a Dockerfile edit cannot slip
past the tests unread.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}


@dataclass
class Stage:
    base: str
    name: str | None
    env: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[list[str], str, dict[str, str]]] = field(default_factory=list)  # (srcs, dest, flags)
    runs: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    healthcheck: tuple[dict[str, str], list[str]] | None = None  # (options, exec-form command)
    expose: list[str] = field(default_factory=list)


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]  # ARGs before the first FROM, with defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def command(self) -> list[str]:
        """What the container runs: ENTRYPOINT + CMD of the final stage."""
        return [*(self.final.entrypoint or []), *(self.final.cmd or [])]


def logical_lines(text: str) -> list[str]:
    """Instructions with continuations joined and comments dropped (as the builder reads them)."""
    out: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            out.append(current.strip())
        current = ""
    if current.strip():
        out.append(current.strip())
    return out


def _flags(words: list[str]) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


def _exec_form(rest: str, what: str) -> list[str]:
    if not rest.startswith("["):
        raise ValueError(f"{what} must use the exec (JSON) form, got {rest!r}")
    value = json.loads(rest)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{what}: not a JSON list of strings: {rest!r}")
    return value


def _substitute(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)


def parse(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if instruction == "FROM":
            words = rest.split()
            base = _substitute(words[0], args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
            continue
        if not stages:
            raise ValueError(f"{path.name}: {instruction} before FROM")
        stage = stages[-1]
        if instruction == "ENV":
            for word in shlex.split(rest):
                key, sep, value = word.partition("=")
                if not sep:
                    raise ValueError(f"{path.name}: use ENV key=value, got {word!r}")
                stage.env[key] = value
        elif instruction == "COPY":
            flags, words = _flags(shlex.split(rest))
            stage.copies.append((words[:-1], words[-1], flags))
        elif instruction == "RUN":
            stage.runs.append(rest)
        elif instruction == "USER":
            stage.user = rest
        elif instruction == "WORKDIR":
            stage.workdir = rest
        elif instruction == "CMD":
            stage.cmd = _exec_form(rest, "CMD")
        elif instruction == "ENTRYPOINT":
            stage.entrypoint = _exec_form(rest, "ENTRYPOINT")
        elif instruction == "EXPOSE":
            stage.expose.extend(rest.split())
        elif instruction == "HEALTHCHECK":
            opts, text = re.fullmatch(r"((?:--\S+\s+)*)(.*)", rest).groups()
            flags, _ = _flags(opts.split())
            if not text.upper().startswith("CMD "):
                raise ValueError(f"{path.name}: HEALTHCHECK must be 'CMD [...]', got {text!r}")
            stage.healthcheck = (flags, _exec_form(text[4:].strip(), "HEALTHCHECK CMD"))
    if not stages:
        raise ValueError(f"{path.name}: no FROM")
    return Dockerfile(path=path, args=args, stages=stages)


def image_path_to_repo(df: Dockerfile, image_path: str) -> Path | None:
    """The repository file that the final stage COPYs (from the build context) to ``image_path``."""
    for srcs, dest, flags in df.final.copies:
        if "from" in flags or len(srcs) != 1:
            continue
        if dest == image_path:
            return REPO / srcs[0]
    return None


# --- .dockerignore ---------------------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match syntax plus '**') as an anchored regex."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        elif c == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(out + r"\Z")


class DockerIgnore:
    """Which paths of the build context the builder sees: the last matching pattern wins, and a
    pattern matching a folder matches everything in it (as Docker's patternmatcher does)."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[re.Pattern[str], bool, str]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = pattern.strip("/")
            self.patterns.append((_glob_regex(pattern), negate, pattern))

    def excluded(self, path: str) -> bool:
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for regex, negate, _ in self.patterns:
            if any(regex.match(c) for c in candidates):
                result = not negate
        return result

    def may_include_below(self, folder: str) -> bool:
        """Whether some exception pattern could re-include a path inside an excluded folder."""
        return any(
            negate and (p.startswith(folder + "/") or p.startswith("**")) for _, negate, p in self.patterns
        )


def build_context(root: Path = REPO) -> list[str]:
    """The files (relative paths) that `docker build` at ``root`` sends, per ``.dockerignore``."""
    ignore = DockerIgnore((root / ".dockerignore").read_text())
    files: list[str] = []

    def walk(folder: Path, rel: str) -> None:
        for entry in sorted(folder.iterdir()):
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir() and not entry.is_symlink():
                if ignore.excluded(path) and not ignore.may_include_below(path):
                    continue
                walk(entry, path)
            elif not ignore.excluded(path):
                files.append(path)

    walk(root, "")
    return files
