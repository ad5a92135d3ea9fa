"""What ``kubectl kustomize`` makes of docker/k8s/ (no kubectl, no cluster), for the fields we use.

A Kustomization here may hold ``resources`` (files, or folders with their own kustomization.yaml),
``images`` (``name`` -> ``newName``/``newTag``) and ``patches`` given as RFC 6902 JSON patches in a
file, each with a ``target`` (kind and name). That is the whole subset; any other field raises, so
that a manifest edit cannot slip past the tests unread. The JSON patches are applied by
``jsonpatch`` (the RFC 6902 implementation on PyPI), in the order kustomize applies them: resources
first, then images, then patches, overlay after base.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "docker" / "k8s"
OVERLAYS = {"cpu": K8S / "overlays" / "cpu", "gpu": K8S / "overlays" / "gpu"}
ADAPTER_RULES = K8S / "prometheus-adapter-rules.yaml"

_FIELDS = {"apiVersion", "kind", "resources", "images", "patches"}


class KustomizeError(ValueError):
    pass


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _set_images(doc: dict[str, Any], images: list[dict[str, str]]) -> None:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        name, _, tag = container["image"].partition(":")
        for image in images:
            if image["name"] == name:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def _target_matches(doc: dict[str, Any], target: dict[str, str]) -> bool:
    unknown = set(target) - {"kind", "name"}
    if unknown:
        raise KustomizeError(f"patch target fields not supported here: {sorted(unknown)}")
    return all(
        (doc["kind"] if key == "kind" else doc["metadata"]["name"]) == value for key, value in target.items()
    )


def render(folder: Path) -> list[dict[str, Any]]:
    """The documents ``kubectl kustomize FOLDER`` prints (same content; order as listed)."""
    kfile = folder / "kustomization.yaml"
    if not kfile.exists():
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text())
    if k.get("kind") != "Kustomization" or k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1":
        raise KustomizeError(f"{kfile}: not a kustomize.config.k8s.io/v1beta1 Kustomization")
    extra = set(k) - _FIELDS
    if extra:
        raise KustomizeError(f"{kfile}: fields this renderer does not handle: {sorted(extra)}")
    docs: list[dict[str, Any]] = []
    for ref in k.get("resources", []):
        path = (folder / ref).resolve()
        docs += render(path) if path.is_dir() else copy.deepcopy(_documents(path))
    ids = [(d["kind"], d["metadata"]["name"]) for d in docs]
    if len(set(ids)) != len(ids):
        raise KustomizeError(f"{kfile}: a resource appears twice: {ids}")
    for d in docs:
        _set_images(d, k.get("images", []))
    for patch in k.get("patches", []):
        if set(patch) != {"path", "target"}:
            raise KustomizeError(f"{kfile}: only file JSON patches with a target are handled: {patch}")
        ops = yaml.safe_load((folder / patch["path"]).read_text())
        if not isinstance(ops, list):
            raise KustomizeError(f"{patch['path']}: not an RFC 6902 list of operations")
        hits = [i for i, d in enumerate(docs) if _target_matches(d, patch["target"])]
        if not hits:
            raise KustomizeError(f"{kfile}: patch {patch['path']} matches no resource")
        for i in hits:
            docs[i] = jsonpatch.apply_patch(docs[i], ops)
    return docs


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for d in docs:
        if d["kind"] in out:
            raise KustomizeError(f"two {d['kind']}s")
        out[d["kind"]] = d
    return out
