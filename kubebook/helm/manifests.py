"""Rendered manifests and values, fit to display: split, tabulated, diffed, always masked first.

A manifest is what helm renders (``---``-separated YAML with ``# Source:`` comments). Every Secret's
data and every value under a secret-looking key is masked by :mod:`kubebook.safety` (its one rule)
before anything here shows it; a diff compares masked text, so a changed password shows as a
changed length, never as its content.
"""
from __future__ import annotations

import difflib
import json
import re
from typing import Any, Mapping

import pandas as pd
import yaml

from ..objects import CLUSTER_SCOPED, Ref
from ..safety import mask, mask_text, mask_values

_DOCUMENT = re.compile(r"^---\s*$", re.M)


def _documents(manifest: str) -> list[tuple[str, dict]]:
    out = []
    for document in _DOCUMENT.split(manifest or ""):
        obj = yaml.safe_load(document) if document.strip() else None
        if isinstance(obj, dict):
            found = re.search(r"^# Source: (.+)$", document, re.M)
            out.append((found.group(1).strip() if found else "", obj))
    return out


def split_manifest(manifest: str) -> list[dict]:
    """The objects of a rendered manifest, empty documents dropped."""
    return [obj for _, obj in _documents(manifest)]


def refs(manifest: str, namespace: str) -> list[Ref]:
    """Every object the manifest would create, as a :class:`~kubebook.objects.Ref` (namespaced ones in
    ``namespace`` unless they name their own): what a plan checks against its confirmed scope."""
    out = []
    for obj in split_manifest(manifest):
        meta = obj.get("metadata") or {}
        ns = "" if obj.get("kind") in CLUSTER_SCOPED else (meta.get("namespace") or namespace)
        out.append(Ref(obj.get("kind", ""), meta.get("name", ""), ns))
    return out


def mask_manifest(manifest: str) -> str:
    """``manifest`` with every Secret's data and secret-looking value masked, as YAML again
    (``# Source:`` comments kept, so it still says which template made each object)."""
    return "".join("---\n" + (f"# Source: {source}\n" if source else "")
                   + yaml.safe_dump(mask(obj), sort_keys=False) for source, obj in _documents(manifest))


def safe_manifest(manifest: str) -> str:
    """``manifest`` fit to display: as helm printed it (comments and layout kept) when it holds no
    Secret, else re-written by :func:`mask_manifest`; free-text secrets masked either way."""
    if any(o.get("kind") == "Secret" for o in split_manifest(manifest)):
        return mask_manifest(manifest)
    return mask_text(manifest)


def objects_table(manifest: str) -> pd.DataFrame:
    """One row per rendered object: kind, name, namespace, the template that made it."""
    rows = [{"kind": obj.get("kind", ""), "name": (obj.get("metadata") or {}).get("name", ""),
             "namespace": (obj.get("metadata") or {}).get("namespace", ""), "template": source}
            for source, obj in _documents(manifest)]
    return pd.DataFrame(rows, columns=["kind", "name", "namespace", "template"])


def manifest_diff(old: str, new: str, *, old_label: str = "before", new_label: str = "after") -> str:
    """A unified diff of two rendered manifests, masked first. Empty when nothing changed."""
    a, b = mask_manifest(old).splitlines(keepends=True), mask_manifest(new).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=old_label, tofile=new_label))


def values_table(values: Mapping[str, Any], prefix: str = "") -> pd.DataFrame:
    """Nested values flattened to helm paths (``image.tag``) with their (masked) values."""
    rows: list[dict] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        else:
            rows.append({"path": path, "value": node if isinstance(node, str) else json.dumps(node)})

    walk(mask_values(dict(values)), prefix)
    return pd.DataFrame(rows, columns=["path", "value"])


def release_summary(data: dict) -> dict:
    """helm's JSON for a release (install, upgrade, dry run): release, namespace, revision, status,
    description, values (masked), manifest (UNMASKED: for diffs and backups), notes (masked)."""
    info = data.get("info") or {}
    return {"release": data.get("name"), "namespace": data.get("namespace"), "revision": data.get("version"),
            "status": info.get("status"), "description": info.get("description"),
            "values": mask_values(data.get("config") or {}), "manifest": data.get("manifest") or "",
            "notes": mask_text(info.get("notes") or "")}


def describe_change(summary: dict | None) -> str:
    """One sentence on what an install or upgrade did, or would do in a dry run."""
    if summary is None:
        return "dry run: nothing installed"
    where = f"{summary['namespace']}/{summary['release']} revision {summary['revision']}"
    if summary.get("dry_run"):
        return f"dry run: would deploy {where} ({summary.get('description') or 'server-side dry run'})"
    if summary.get("previous_manifest") is None:
        return f"installed {where}"
    if not summary.get("changed"):
        return f"upgraded {where} with no manifest change: same chart and values render the same objects"
    return f"upgraded {where}: the rendered manifest changed (see the diff)"
