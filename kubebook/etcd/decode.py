"""What Kubernetes stored, made readable: /registry values decoded with upstream codecs.

Decoding is done by ``kubebook-decode`` (Go, ``kubebook/etcd/decoder``), which compiles in
client-go's scheme plus apiextensions and apiregistration: built-in types stored as protobuf
(``k8s\\0`` prefix) become JSON, JSON-stored custom resources pass through, and values
encrypted at rest (``k8s:enc:...``) are reported as encrypted. It reads a snapshot file
directly (read-only, no etcd needed), or values fetched from a live etcd.
"""
from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from typing import Any, Callable

import pandas as pd

from .. import binaries
from ..errors import KubebookError
from ..show import as_yaml
from .client import Etcd, connect, parse_registry_key


class DecodeError(KubebookError):
    pass


@dataclass
class Record:
    """One key: where it is, how it was stored, and the object when it could be decoded."""

    key: str
    size: int
    encoding: str
    object: dict | None = None
    error: str = ""
    provider: str = ""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    where: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        return cls(key=data.get("key", ""), size=data.get("size", 0), encoding=data.get("encoding", ""),
                   object=data.get("object"), error=data.get("error", ""), provider=data.get("provider", ""),
                   create_revision=data.get("create_revision", 0), mod_revision=data.get("mod_revision", 0),
                   version=data.get("version", 0), where=parse_registry_key(data.get("key", "")))

    @property
    def kind(self) -> str:
        return (self.object or {}).get("kind", "")

    @property
    def status(self) -> str:
        if self.encoding == "encrypted":
            return f"encrypted ({self.provider})"
        if self.error:
            return f"undecodable: {self.error[:80]}"
        return self.encoding


def _run(args: list[str], stdin: str | None = None) -> list[Record]:
    exe = binaries.ensure_decoder()
    proc = subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise DecodeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else
                          f"kubebook-decode exited {proc.returncode}")
    return [Record.from_json(json.loads(line)) for line in proc.stdout.splitlines() if line]


def read_snapshot(path: str | Path, *, prefix: str = "/registry/", keys_only: bool = False) -> list[Record]:
    """Every live key under ``prefix`` in a snapshot file, decoded (or metadata only with ``keys_only``)."""
    if not Path(path).is_file():
        raise DecodeError(f"snapshot not found: {path}")
    args = ["snapshot", "-file", str(path), "-prefix", prefix]
    return _run(args + (["-keys-only"] if keys_only else []))


def decode_values(items: list[tuple[str, bytes]]) -> list[Record]:
    """Decode raw (key, value) pairs, e.g. read from a live etcd; one process for the whole batch."""
    if not items:
        return []
    lines = "\n".join(json.dumps({"Key": k, "Value": base64.b64encode(v).decode()}) for k, v in items)
    return _run(["values"], stdin=lines + "\n")


def read_live(etcd: Etcd, *, prefix: str = "/registry/") -> list[Record]:
    """Keys under ``prefix`` from a running etcd, decoded like a snapshot's."""
    resp = etcd.client().get_prefix_response(prefix, sort_order="ascend")
    meta = {kv.key.decode(): kv for kv in resp.kvs}
    records = decode_values([(k, kv.value) for k, kv in meta.items()])
    for r in records:
        kv = meta[r.key]
        r.create_revision, r.mod_revision, r.version = kv.create_revision, kv.mod_revision, kv.version
    return records


def read(source: str, *, target: Any = None, snapshot: str = "", snapshot_dir: str = "", prefix: str = "/registry/",
         endpoints: str = "", cacert: str = "", cert: str = "", key: str = "",
         log: Callable[[str], None] = print) -> list[Record]:
    """Every key under ``prefix`` from ``source``: "live" (etcd, resolved as :func:`connect` does)
    or "snapshot" (``snapshot``, or the newest in ``snapshot_dir``); ``log`` says which was read."""
    from .snapshot import locate
    if source == "live":
        with connect(endpoints=endpoints, cacert=cacert, cert=cert, key=key, target=target, log=log) as etcd:
            records, where = read_live(etcd, prefix=prefix), f"the live etcd {etcd.endpoints[0].url}"
    elif source == "snapshot":
        path = locate(snapshot, snapshot_dir=snapshot_dir, target=target)
        records, where = read_snapshot(path, prefix=prefix), f"snapshot {path}"
    else:
        raise DecodeError(f"source {source!r}: expected 'live' or 'snapshot'")
    log(f"{len(records)} keys under {prefix} from {where}")
    return records


def by_encoding(table: pd.DataFrame) -> pd.DataFrame:
    """Keys per resource and how they are stored (protobuf, json, encrypted, undecodable)."""
    return table.groupby(["resource", "stored as"]).size().unstack(fill_value=0)


def in_namespace(table: pd.DataFrame, namespace: str) -> pd.DataFrame:
    """The keys of one namespace's objects."""
    return table[table["namespace"] == namespace].drop(columns=["key"])


def show_key(records: list[Record], key: str) -> str:
    """:func:`show` of the record stored under ``key``, or a line saying it is not there."""
    found = next((r for r in records if r.key == key), None)
    return show(found) if found is not None else f"{key} is not among these keys\n"


def table(records: list[Record]) -> pd.DataFrame:
    """Records as resource, namespace, name, kind, size, revision and how each was stored."""
    rows = [{**r.where, "kind": r.kind, "size": r.size, "mod_revision": r.mod_revision, "stored as": r.status,
             "key": r.key} for r in records]
    return pd.DataFrame(rows, columns=["resource", "namespace", "name", "kind", "size", "mod_revision",
                                       "stored as", "key"])


def find(records: list[Record], *, resource: str, name: str, namespace: str = "") -> Record:
    for r in records:
        if r.where.get("resource") == resource and r.where.get("name") == name \
                and r.where.get("namespace") == namespace:
            return r
    raise DecodeError(f"no {resource} {namespace + '/' if namespace else ''}{name} in these keys")


def show(record: Record) -> str:
    """The object as YAML, with Secret data masked; a note instead when it could not be decoded."""
    if record.object is None:
        return f"# {record.key}: {record.status}, {record.size} bytes: nothing to show\n"
    return as_yaml(record.object)
