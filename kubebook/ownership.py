"""What a run made and what it changed: the rules behind "delete only what you created".

Every object a run creates carries the annotation ``kubebook.io/created-by: <run id>`` (and the
label ``app.kubernetes.io/managed-by: kubebook``), and the run's record lists it. An object that
existed before the run is backed up (YAML, 0600) before the run first modifies or deletes it;
cleaning up deletes what the run created and puts back what it changed, from the backups.

The record is a file, ``<state>/owned/<run id>.json`` (0600), written after every change, so a
run that stopped half-way still says what it left behind and where the backups are.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import paths, safety
from .errors import KubebookError
from .objects import Ref, clean

CREATED_BY = "kubebook.io/created-by"
MANAGED_BY = "app.kubernetes.io/managed-by"
RUN_ID_ENV = "KUBEBOOK_RUN_ID"
# Taints the node lifecycle controller adds and removes itself: never backed up or restored
CONTROLLER_TAINTS = "node.kubernetes.io/"
UNSCHEDULABLE_TAINT = CONTROLLER_TAINTS + "unschedulable"

_process_run_id: str | None = None


class BackupFailed(KubebookError):
    """The backup taken before a change could not be written: the change was not made."""


def run_id() -> str:
    """This run's identity: the runner's (``$KUBEBOOK_RUN_ID``), else one per process (a kernel)."""
    global _process_run_id
    if os.environ.get(RUN_ID_ENV):
        return os.environ[RUN_ID_ENV]
    if _process_run_id is None:
        _process_run_id = f"interactive-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    return _process_run_id


def mark(body: dict, run: str) -> dict:
    """A copy of ``body`` that says which run made it."""
    meta = dict(body.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), CREATED_BY: run}
    meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY: "kubebook"}
    return {**body, "metadata": meta}


def made_by(obj: dict | None) -> str:
    """The run that created ``obj`` ("" when kubebook did not, or it does not exist)."""
    return ((obj or {}).get("metadata") or {}).get("annotations", {}).get(CREATED_BY, "") if obj else ""


@dataclass
class Change:
    """A pre-existing object this run modified or deleted, and where its backup is."""

    ref: Ref
    backup: Path
    restore: bool = True  # put back at clean-up (a demo step) or keep the change (an operation)


@dataclass
class Record:
    run: str
    created: list[Ref] = field(default_factory=list)
    changed: dict[Ref, Change] = field(default_factory=dict)
    cleaned: bool = False

    @property
    def path(self) -> Path:
        return paths.state_root() / "owned" / f"{self.run}.json"

    @property
    def backup_dir(self) -> Path:
        return paths.backups_root() / self.run

    def owns(self, ref: Ref, obj: dict | None = None) -> bool:
        return ref in self.created or (obj is not None and made_by(obj) == self.run)

    def add_created(self, ref: Ref) -> None:
        if ref not in self.created:
            self.created.append(ref)
        self.save()

    def add_changed(self, change: Change) -> None:
        self.changed.setdefault(change.ref, change)
        self.save()

    def save(self) -> Path:
        body = {"run": self.run, "cleaned": self.cleaned,
                "created": [vars(r) for r in self.created],
                "changed": [{**vars(c.ref), "backup": str(c.backup), "restore": c.restore}
                            for c in self.changed.values()]}
        paths.private_dir(self.path.parent, tighten=True)
        return safety.write_private(self.path, json.dumps(body, indent=1))

    @classmethod
    def load(cls, run: str) -> "Record":
        record = cls(run)
        if record.path.is_file():
            body = json.loads(record.path.read_text())
            record.created = [Ref(**r) for r in body.get("created", [])]
            record.changed = {Ref(c["kind"], c["name"], c["namespace"]): Change(
                Ref(c["kind"], c["name"], c["namespace"]), Path(c["backup"]), c.get("restore", True))
                for c in body.get("changed", [])}
            record.cleaned = body.get("cleaned", False)
        return record


def records() -> list[Record]:
    """Every run on record, newest first."""
    root = paths.state_root() / "owned"
    found = [Record.load(p.stem) for p in root.glob("*.json")] if root.is_dir() else []
    return sorted(found, key=lambda r: r.path.stat().st_mtime, reverse=True)


def backup(obj: dict, record: Record) -> Path:
    """Write ``obj`` (server fields dropped, so it can be created again) under the run's backup
    directory, 0600. Any failure raises :class:`BackupFailed`: no backup, no change."""
    ref = Ref.of(obj)
    name = "-".join(p for p in (ref.kind.lower(), ref.namespace, ref.name) if p) + ".yaml"
    try:
        paths.private_dir(record.backup_dir, tighten=True)
        return safety.write_private(record.backup_dir / name, yaml.safe_dump(clean(obj), sort_keys=False))
    except OSError as exc:
        raise BackupFailed(f"backup of {ref} to {record.backup_dir} failed ({exc.strerror}); nothing was changed") \
            from None


def load_backup(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def restore_patch(kind: str, saved: dict, current: dict) -> dict | None:
    """How to put ``current`` back as ``saved`` for kinds restored field by field (None: replace it whole).

    A node is not kubebook's to replace (its status and the controllers' taints move on their own):
    only its labels, the taints not owned by the node controller, and cordon go back.
    """
    if kind == "Node":
        labels_then = (saved.get("metadata") or {}).get("labels") or {}
        labels_now = (current.get("metadata") or {}).get("labels") or {}
        labels = {**{k: None for k in labels_now if k not in labels_then}, **labels_then}
        taints_now = (current.get("spec") or {}).get("taints") or []
        taints_then = (saved.get("spec") or {}).get("taints") or []
        cordoned_then = bool((saved.get("spec") or {}).get("unschedulable"))
        # The unschedulable taint only mirrors spec.unschedulable; uncordoning drops it at once
        # rather than leaving a NoSchedule taint until the node controller's next pass.
        taints = [t for t in taints_now if t["key"].startswith(CONTROLLER_TAINTS)
                  and (cordoned_then or t["key"] != UNSCHEDULABLE_TAINT)] + \
            [{k: v for k, v in t.items() if k != "timeAdded"} for t in taints_then
             if not t["key"].startswith(CONTROLLER_TAINTS)]
        return {"metadata": {"labels": labels},
                "spec": {"taints": taints or None, "unschedulable": cordoned_then or None}}
    if kind == "Namespace":
        meta_then, meta_now = saved.get("metadata") or {}, current.get("metadata") or {}
        patch: dict[str, Any] = {}
        for part in ("labels", "annotations"):
            then, now = meta_then.get(part) or {}, meta_now.get(part) or {}
            patch[part] = {**{k: None for k in now if k not in then}, **then}
        return {"metadata": patch}
    return None


def replacement(saved: dict, current: dict) -> dict:
    """``saved`` as a body that replaces ``current`` (its resourceVersion, so no one else's write is lost)."""
    body = clean(saved)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    if saved.get("kind") == "Service":  # the cluster IP cannot change; the saved one is the same anyway
        body.setdefault("spec", {})["clusterIP"] = (current.get("spec") or {}).get("clusterIP")
    return body
