"""What Docker Compose does with docker/docker-compose.yml before talking to an engine:
interpolation, schema validation, profile selection and the dependency check.

The schema is the Compose Specification's JSON schema, vendored next to this file as
``compose-spec.json``: https://github.com/compose-spec/compose-spec/blob/main/schema/compose-spec.json
(Apache-2.0, licence in ``compose-spec.LICENSE``), taken as vendored by check-jsonschema 0.39.0 on
PyPI (``check_jsonschema/builtin_schemas/vendor/compose-spec.json``, sha256
d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64). The selection and dependency
rules follow the Compose Specification (profiles) and compose-go's consistency check (a dependency
on a disabled service is an error unless it has ``required: false``).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMPOSE_FILE = REPO / "docker" / "docker-compose.yml"
SCHEMA_FILE = HERE / "compose-spec.json"

_VAR = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_EXPR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?|\?|:\+|\+)(.*))?", re.S)
# Fields that Compose casts from the interpolated string to a number.
_INT_FIELDS = {("deploy", "replicas"), ("scale",)}


class InterpolationError(ValueError):
    pass


def interpolate_string(text: str, env: dict[str, str]) -> str:
    def replace(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        if m.group(3):
            return env.get(m.group(3), "")
        expr = _EXPR.fullmatch(m.group(2))
        if expr is None:
            raise InterpolationError(f"invalid interpolation {m.group(0)!r}")
        name, op, arg = expr.groups()
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if value is None or (op == ":?" and not value):
                raise InterpolationError(f"required variable {name} is missing: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        return arg if value is not None else ""  # "+"

    return _VAR.sub(replace, text)


def interpolate(node: Any, env: dict[str, str], path: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        return {k: interpolate(v, env, (*path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, path) for v in node]
    if isinstance(node, str):
        value = interpolate_string(node, env)
        if path[-2:] in _INT_FIELDS or path[-1:] in _INT_FIELDS:
            return int(value)
        return value
    return node


def load(env: dict[str, str] | None = None, text: str | None = None) -> dict[str, Any]:
    """The compose file, YAML anchors and merge keys resolved; interpolated when ``env`` is given."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text() if text is None else text)
    return raw if env is None else interpolate(copy.deepcopy(raw), env)


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def schema_errors(document: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def profiles_of(service: dict[str, Any]) -> set[str]:
    return set(service.get("profiles") or [])


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started", "required": True} for name in deps}
    return {name: {"required": True, **(cfg or {})} for name, cfg in deps.items()}


def started(
    compose: dict[str, Any], targets: tuple[str, ...] = (), profiles: tuple[str, ...] = ()
) -> set[str]:
    """The services ``docker compose [--profile P ...] up [TARGETS]`` starts.

    Raises ValueError like Compose does when an enabled service depends on one that is not enabled.
    """
    services = compose["services"]
    for t in targets:
        if t not in services:
            raise ValueError(f"no such service: {t}")
    active = set(profiles)
    for t in targets:  # naming a service enables its profiles
        active |= profiles_of(services[t])
    enabled = {n for n, s in services.items() if not profiles_of(s) or profiles_of(s) & active}
    for name in enabled:
        for dep, cfg in depends_on(services[name]).items():
            if dep not in enabled and (cfg.get("required", True) is True or dep not in services):
                raise ValueError(
                    f'service "{name}" depends on undefined service "{dep}": invalid compose project'
                )
    if not targets:
        return enabled
    start: set[str] = set()
    todo = list(targets)
    while todo:
        name = todo.pop()
        if name in start:
            continue
        start.add(name)
        todo.extend(d for d in depends_on(services[name]) if d in enabled)
    return start
