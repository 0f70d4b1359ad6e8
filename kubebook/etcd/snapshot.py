"""etcd snapshots: save with progress, verify, describe in a JSON sidecar, keep the newest N.

Named as the course names them, ``<host>-etcd_<YYYYmmddHHMM>.db``, where host is the etcd
member's name (on kubeadm, the node's hostname). A save streams into a hidden ``.partial``
file, checks the sha256 etcd appends to the stream, and only then renames it into place: a
failed or interrupted save never leaves a file that looks like a snapshot.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyetcd

from .. import binaries
from ..errors import KubebookError
from .client import Etcd

SHA256_LEN = 32
DEFAULT_DIR = "/var/backups/etcd"


class SnapshotError(KubebookError):
    pass


@dataclass(frozen=True)
class SnapshotInfo:
    """What ``etcdutl snapshot status`` reports, plus the file's own sha256."""

    path: str
    sha256: str
    size_bytes: int
    hash: int            # etcd's crc32c over the bolt buckets
    revision: int
    total_keys: int
    total_size: int
    version: str         # storage version
    member: str = ""
    endpoint: str = ""
    taken_at: str = ""

    @property
    def sidecar(self) -> Path:
        return Path(self.path).with_suffix(".json")

    def row(self) -> dict:
        return {"file": Path(self.path).name, "revision": self.revision, "total keys": self.total_keys,
                "size": self.size_bytes, "hash": f"{self.hash:x}", "sha256": self.sha256[:16] + "…",
                "version": self.version, "taken at": self.taken_at}


def resolve_dir(snapshot_dir: str = "", lab: str = "") -> Path:
    """``snapshot_dir``, or where snapshots go by default: the lab's ``snapshots/``, else /var/backups/etcd."""
    if snapshot_dir:
        return Path(snapshot_dir).expanduser()
    if lab:
        from .. import lab as labs
        return labs.get(lab).dir / "snapshots"
    return Path(DEFAULT_DIR)


def snapshot_name(host: str, when: dt.datetime) -> str:
    return f"{host}-etcd_{when:%Y%m%d%H%M}.db"


def _free_name(directory: Path, name: str) -> Path:
    """The name, or name-2, -3 ... when a snapshot was already taken in the same minute."""
    path = directory / name
    n = 2
    while path.exists():
        path = directory / name.replace(".db", f"-{n}.db")
        n += 1
    return path


def verify_checksum(path: str | Path) -> str:
    """Check the sha256 etcd appends to a snapshot stream; return the file's own sha256."""
    whole = hashlib.sha256()
    body = hashlib.sha256()
    size = Path(path).stat().st_size
    if size <= SHA256_LEN:
        raise SnapshotError(f"{path}: {size} bytes is too small to be an etcd snapshot")
    with open(path, "rb") as f:
        remaining = size - SHA256_LEN
        while remaining:
            chunk = f.read(min(1 << 20, remaining))
            body.update(chunk)
            whole.update(chunk)
            remaining -= len(chunk)
        trailer = f.read()
    whole.update(trailer)
    if trailer != body.digest():
        raise SnapshotError(f"{path}: the sha256 at its end does not match its content (truncated or corrupt)")
    return whole.hexdigest()


def status(path: str | Path) -> dict:
    """``etcdutl snapshot status -w json`` as a dict (hash, revision, totalKey, totalSize, version)."""
    etcdutl = binaries.find("etcdutl")
    if etcdutl is None:
        raise SnapshotError("etcdutl not found: install etcd's tools or run `kubebook lab build`")
    proc = subprocess.run([str(etcdutl), "snapshot", "status", str(path), "-w", "json"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SnapshotError(f"etcdutl snapshot status {path} failed: {proc.stderr.strip()[:500]}")
    return json.loads(proc.stdout)


def describe(path: str | Path, *, member: str = "", endpoint: str = "", taken_at: str = "") -> SnapshotInfo:
    """Verify a snapshot file (checksum and etcdutl status) and describe it."""
    digest = verify_checksum(path)
    st = status(path)
    return SnapshotInfo(path=str(path), sha256=digest, size_bytes=Path(path).stat().st_size, hash=st["hash"],
                        revision=st["revision"], total_keys=st["totalKey"], total_size=st["totalSize"],
                        version=st.get("version", ""), member=member, endpoint=endpoint, taken_at=taken_at)


def save(etcd: Etcd, directory: str | Path, *, host: str = "", when: dt.datetime | None = None,
         progress: bool = True) -> SnapshotInfo:
    """Stream a snapshot from ``etcd`` into ``directory``, verify it and write its JSON sidecar."""
    from tqdm.auto import tqdm
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    when = when or dt.datetime.now()
    host = host or etcd.member_name()
    final = _free_name(directory, snapshot_name(host, when))
    partial = directory / f".{final.name}.partial"
    client = etcd.client()
    try:
        with open(partial, "wb") as out, tqdm(unit="B", unit_scale=True, desc=final.name,
                                               disable=not progress) as bar:
            stream = client.maintenancestub.Snapshot(pyetcd.etcdrpc.SnapshotRequest(), etcd.timeout * 60,
                                                     credentials=client.call_credentials,
                                                     metadata=client.metadata)
            for chunk in stream:
                out.write(chunk.blob)
                bar.total = bar.n + len(chunk.blob) + chunk.remaining_bytes
                bar.update(len(chunk.blob))
            out.flush()
            os.fsync(out.fileno())
        info = describe(partial, member=host, endpoint=etcd.endpoints[0].url,
                        taken_at=when.isoformat(timespec="seconds"))
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    info = SnapshotInfo(**{**asdict(info), "path": str(final)})
    info.sidecar.write_text(json.dumps(asdict(info), indent=2))
    return info


_STAMP = re.compile(r"-etcd_(\d{12})(?:-(\d+))?\.db$")


def listing(directory: str | Path, host: str = "") -> list[Path]:
    """Snapshots in ``directory`` (of ``host`` if given), oldest first by the time in their names."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = f"{host}-etcd_*.db" if host else "*-etcd_*.db"
    found = [p for p in directory.glob(pattern) if _STAMP.search(p.name)]

    def order(p: Path):
        m = _STAMP.search(p.name)
        return (m.group(1), int(m.group(2) or 1), p.stat().st_mtime)
    return sorted(found, key=order)


def newest(directory: str | Path, host: str = "") -> Path | None:
    found = listing(directory, host)
    return found[-1] if found else None


def locate(snapshot: str, *, snapshot_dir: str = "", lab: str = "") -> Path:
    """A snapshot file from a runbook parameter: a path, or "latest" (the newest in the directory)."""
    if snapshot and snapshot != "latest":
        path = Path(snapshot).expanduser()
        if not path.is_file():
            raise SnapshotError(f"snapshot not found: {path}")
        return path
    directory = resolve_dir(snapshot_dir, lab)
    found = newest(directory)
    if found is None:
        raise SnapshotError(f"no snapshot in {directory}: take one with the etcd/snapshot runbook first")
    return found


def to_prune(directory: str | Path, *, host: str, keep: int, protect: str | Path) -> list[Path]:
    """Snapshots beyond the newest ``keep`` (never ``protect``, the one just taken)."""
    if keep < 1:
        raise SnapshotError("retention must keep at least 1 snapshot")
    found = [p for p in listing(directory, host) if p.resolve() != Path(protect).resolve()]
    return found[: max(0, len(found) - (keep - 1))]


def prune(paths: list[Path]) -> list[str]:
    removed = []
    for p in paths:
        p.unlink(missing_ok=True)
        p.with_suffix(".json").unlink(missing_ok=True)
        removed.append(p.name)
    return removed


def table(directory: str | Path, host: str = "") -> pd.DataFrame:
    """Every snapshot in ``directory`` with the figures from its sidecar (or 'no sidecar')."""
    rows = []
    for p in listing(directory, host):
        sidecar = p.with_suffix(".json")
        if sidecar.is_file():
            rows.append(SnapshotInfo(**json.loads(sidecar.read_text())).row())
        else:
            rows.append({"file": p.name, "size": p.stat().st_size, "version": "no sidecar"})
    return pd.DataFrame(rows)
