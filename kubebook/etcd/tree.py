"""etcd's flat key space as a tree of prefixes, and one key shown as the object it stores.

    children(etcd.keys("/registry/"), "/registry/")   # pods/ (12), namespaces/ (5), ...
    show_key(etcd, "/registry/secrets/luffy/db")      # YAML, Secret data masked

Keys are split at ``/`` as ``etcdctl get --prefix`` users read them. Values under ``/registry``
are decoded by Kubernetes' own codecs (:mod:`kubebook.etcd.decode`); anything else is shown as
text, or hex when binary. Writing a key is a plan step (:func:`put`): the value the key had
before the run's first write is saved first (0600, in the run's backup directory), and
:func:`undo_puts` deletes the keys the run created and puts back the values it replaced.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pandas as pd

from .. import paths
from ..ownership import BackupFailed
from ..plan import Plan
from ..safety import mask_text, write_private
from .client import SECRET_PREFIXES, Etcd, EtcdError, display_value


def children(keys: list[str], prefix: str) -> pd.DataFrame:
    """The next level under ``prefix``: one row per child prefix (with its key count) or key."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    counts: dict[str, int] = {}
    leaves: set[str] = set()
    for key in keys:
        if not key.startswith(prefix) or key == prefix:
            continue
        head, slash, _ = key[len(prefix):].partition("/")
        if slash:
            counts[head + "/"] = counts.get(head + "/", 0) + 1
        else:
            leaves.add(head)
    rows = [{"name": name, "path": prefix + name, "keys": n, "leaf": False} for name, n in sorted(counts.items())]
    rows += [{"name": name, "path": prefix + name, "keys": 1, "leaf": True} for name in sorted(leaves)]
    return pd.DataFrame(rows, columns=["name", "path", "keys", "leaf"])


def parent(prefix: str) -> str:
    """``/registry/pods/`` → ``/registry/``; the root stays ``/``."""
    trimmed = prefix.rstrip("/")
    return trimmed[: trimmed.rfind("/") + 1] or "/" if trimmed else "/"


def show_key(etcd: Etcd, key: str) -> str:
    """What ``key`` holds, for display: the decoded object as YAML (Secrets masked), or its value."""
    value = etcd.get_value(key)
    if value is None:
        return f"# {key}: no such key\n"
    if key.startswith("/registry/"):
        from . import decode
        records = decode.decode_values([(key, value)])
        if records and records[0].object is not None:
            # managedFields are bookkeeping of server-side apply; `kubectl get -o yaml` hides them too
            records[0].object.get("metadata", {}).pop("managedFields", None)
            return decode.show(records[0])
    if key.startswith(SECRET_PREFIXES):
        return display_value(key, value)
    return mask_text(display_value(key, value, limit=4000))


def _saved(plan: Plan, key: str) -> Path:
    """Where the run keeps what ``key`` held before its first write (one file per key)."""
    return plan.record.backup_dir / f"etcd-key-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _encoded(value: bytes | None) -> str | None:
    return base64.b64encode(value).decode() if value is not None else None


def put(plan: Plan, etcd: Etcd, key: str, value: str) -> int | None:
    """``etcdctl put KEY VALUE`` as a step; returns the revision it created. Refuses ``/registry``:
    Kubernetes' objects are changed through the API server, never behind its back. The key's
    earlier value (or its absence) is saved before the run first writes it; a failed save writes nothing."""
    if key.startswith("/registry"):
        raise EtcdError(f"{key}: keys under /registry belong to kube-apiserver; change the object through the API")
    saved = _saved(plan, key)

    def act() -> int:
        record = json.loads(saved.read_text()) if saved.is_file() else \
            {"key": key, "before": _encoded(etcd.get_value(key))}
        record["written"] = _encoded(value.encode())
        try:
            paths.private_dir(saved.parent, tighten=True)
            write_private(saved, json.dumps(record))
        except OSError as exc:
            raise BackupFailed(f"saving {key}'s value to {saved} failed ({exc.strerror}); nothing was written") from None
        return etcd.put(key, value)

    return plan.step("put", f"put {key} = {mask_text(value)!r} (what it held before is saved first, put back at "
                     "clean-up)", act, command=f"etcdctl put {key} {mask_text(value)}")


def undo_puts(plan: Plan, etcd: Etcd) -> list:
    """One step per key this run wrote with :func:`put`: deleted if the run created it, else given back
    the value it had. A key someone changed since the run's write is left alone, and named."""
    steps = []
    for saved in sorted(plan.record.backup_dir.glob("etcd-key-*.json")):
        record = json.loads(saved.read_text())
        key, before = record["key"], record["before"]

        def act(saved=saved, key=key, before=before, written=record["written"]) -> str:
            now = etcd.get_value(key)
            if _encoded(now) != written:
                return f"left: {key} changed since this run wrote it"
            if before is None:
                etcd.delete(key)
            else:
                etcd.put(key, base64.b64decode(before))
            saved.unlink()
            return "deleted" if before is None else "put back"

        what = f"delete {key} (this run created it)" if before is None else f"put back the value {key} had"
        steps.append(plan.step(f"clean-up-{key}", what, act,
                               command=f"etcdctl del {key}" if before is None else f"etcdctl put {key} <saved value>"))
    return steps
