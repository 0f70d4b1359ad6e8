"""etcd snapshots: save with progress, verify, describe in a JSON sidecar, keep the newest N.

Named as the course names them, ``<host>-etcd_<YYYYmmddHHMM>.db``, where host is the etcd
member's name (on kubeadm, the node's hostname). A save streams into a hidden ``.partial``
file, checks the sha256 etcd appends to the stream, and only then links it into place: a
failed or interrupted save never leaves a file that looks like a snapshot, and says so.

A snapshot holds every Secret of the cluster: files are written 0600 (as etcdctl writes them)
and directories kubebook creates 0700. ``host`` is one file name, never a path.
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

from typing import Any, Callable

import grpc
import pandas as pd
import pyetcd

from .. import binaries, paths, safety
from ..errors import KubebookError
from ..show import named
from .client import Etcd, _short

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


def resolve_dir(snapshot_dir: str = "", target: Any = None) -> Path:
    """``snapshot_dir``, or where snapshots go by default: the lab's ``snapshots/`` when ``target``
    (a :class:`kubebook.connect.Target`) is a kubebook lab, else /var/backups/etcd."""
    if snapshot_dir:
        return Path(snapshot_dir).expanduser()
    lab = getattr(target, "lab", None)
    if lab is not None:
        return lab.dir / "snapshots"
    return Path(DEFAULT_DIR)


def check_host(host: str) -> str:
    """``host`` as the start of a file name: one path component, or SnapshotError."""
    if not host or "/" in host or "\x00" in host or host in (".", "..") or host.startswith("-"):
        raise SnapshotError(f"{host!r} cannot start a snapshot's file name (one name: no '/', not '.' or '..')")
    return host


def snapshot_name(host: str, when: dt.datetime) -> str:
    return f"{check_host(host)}-etcd_{when:%Y%m%d%H%M}.db"


def _free_names(directory: Path, name: str):
    """The name, then name-2, -3 ... (a snapshot already taken in the same minute keeps its name)."""
    yield directory / name
    n = 2
    while True:
        yield directory / name.replace(".db", f"-{n}.db")
        n += 1


def _link_into_place(partial: Path, directory: Path, name: str) -> Path:
    """Give ``partial`` the first free name, atomically and never over an existing file."""
    for path in _free_names(directory, name):
        try:
            os.link(partial, path)
        except FileExistsError:
            continue
        partial.unlink()
        return path
    raise AssertionError("unreachable")


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


def _kubebooks_own(directory: Path) -> bool:
    """Whether ``directory`` lies in kubebook's state (a lab's snapshots, backups): always made 0700.
    Elsewhere an existing directory keeps the mode its owner gave it (the files are 0600 anyway)."""
    resolved = directory.expanduser().resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in (paths.state_root(), paths.labs_root()))


def _open_private(path: Path):
    """A new file, 0600 from its first byte, never through a planted symlink or over another file."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb")


def save(etcd: Etcd, directory: str | Path, *, host: str = "", when: dt.datetime | None = None,
         progress: bool = True, on_chunk: Callable[[int], None] | None = None) -> SnapshotInfo:
    """Stream a snapshot from ``etcd`` into ``directory``, verify it and write its JSON sidecar.

    The file and its sidecar are 0600; a missing ``directory`` is created 0700. ``on_chunk`` is
    called with the bytes received so far after each chunk (progress for callers without a bar).
    An interrupted stream raises SnapshotError saying nothing was kept and to run it again."""
    from tqdm.auto import tqdm
    host = check_host(host or etcd.member_name())
    directory = paths.private_dir(Path(directory).expanduser(), tighten=_kubebooks_own(Path(directory)))
    when = when or dt.datetime.now()
    name = snapshot_name(host, when)
    partial = directory / f".{name}.{os.getpid()}.partial"
    client = etcd.client()
    received = 0
    try:
        with _open_private(partial) as out, tqdm(unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
            stream = client.maintenancestub.Snapshot(pyetcd.etcdrpc.SnapshotRequest(), etcd.timeout * 60,
                                                     credentials=client.call_credentials,
                                                     metadata=client.metadata)
            try:
                for chunk in stream:
                    out.write(chunk.blob)
                    received += len(chunk.blob)
                    bar.total = bar.n + len(chunk.blob) + chunk.remaining_bytes
                    bar.update(len(chunk.blob))
                    if on_chunk is not None:
                        on_chunk(received)
            except grpc.RpcError as exc:
                raise SnapshotError(f"the snapshot from {etcd.endpoints[0].url} was interrupted after {received} "
                                    f"bytes ({_short(exc)}); nothing was kept in {directory}: run it again once "
                                    "etcd answers") from None
            out.flush()
            os.fsync(out.fileno())
        try:
            info = describe(partial, member=host, endpoint=etcd.endpoints[0].url,
                            taken_at=when.isoformat(timespec="seconds"))
        except SnapshotError as exc:  # a stream that ended early: truncated, so refused
            raise SnapshotError(f"{exc}; nothing was kept in {directory}: run the snapshot again") from None
        final = _link_into_place(partial, directory, name)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    info = SnapshotInfo(**{**asdict(info), "path": str(final)})
    safety.write_private(info.sidecar, json.dumps(asdict(info), indent=2))
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


def locate(snapshot: str = "", *, snapshot_dir: str = "", target: Any = None) -> Path:
    """A snapshot file from a runbook parameter: a path, or "" / "latest" (the newest in the directory)."""
    if snapshot and snapshot != "latest":
        path = Path(snapshot).expanduser()
        if not path.is_file():
            raise SnapshotError(f"snapshot not found: {path}")
        return path
    directory = resolve_dir(snapshot_dir, target)
    found = newest(directory)
    if found is None:
        raise SnapshotError(f"no snapshot in {directory}: take one with the etcd/snapshot runbook first")
    return found


def to_prune(directory: str | Path, *, host: str, keep: int, protect: str | Path) -> list[Path]:
    """Snapshots beyond the newest ``keep``, the one just taken (``protect``) counted and never
    chosen; ``keep=0`` turns retention off (nothing is chosen)."""
    if keep < 0:
        raise SnapshotError(f"keep={keep}: retention keeps 0 (all) or more snapshots")
    if keep == 0:
        return []
    found = [p for p in listing(directory, host) if p.resolve() != Path(protect).resolve()]
    return found[: max(0, len(found) - (keep - 1))]


def retention(plan, directory: str | Path, *, host: str, keep: int, protect: str | Path) -> str | None:
    """Delete ``host``'s snapshots beyond the newest ``keep`` (and their sidecars), as a step of ``plan``."""
    old = to_prune(directory, host=host, keep=keep, protect=protect)
    what = "keep every snapshot (keep=0)" if keep == 0 else \
        f"delete {len(old)} snapshot(s) of {host} beyond the newest {keep}: {', '.join(p.name for p in old) or 'none'}"
    return plan.step("retention", what, lambda: ", ".join(prune(old)) or "nothing to delete",
                     command=f"rm {' '.join(str(p) for p in old)}" if old else "")


def prune(paths: list[Path]) -> list[str]:
    removed = []
    for p in paths:
        p.unlink(missing_ok=True)
        p.with_suffix(".json").unlink(missing_ok=True)
        removed.append(p.name)
    return removed


def table(directory: str | Path, host: str = "") -> pd.DataFrame:
    """Every snapshot in ``directory`` with the figures from its sidecar (or 'no sidecar') and its
    file mode (a snapshot holds every Secret: 0600)."""
    rows = []
    for p in listing(directory, host):
        sidecar = p.with_suffix(".json")
        if sidecar.is_file():
            row = SnapshotInfo(**json.loads(sidecar.read_text())).row()
        else:
            row = {"file": p.name, "size": p.stat().st_size, "version": "no sidecar"}
        rows.append({**row, "mode": f"{p.stat().st_mode & 0o777:04o}"})
    return named(pd.DataFrame(rows), "snapshots", key=["file"])


def summary(path: str | Path | None) -> pd.DataFrame:
    """One snapshot verified and described (checksum, etcdutl status), or a note when there is
    none yet (a rehearsal's dry run: its snapshot is taken when acting)."""
    if path is None:
        return pd.DataFrame([{"file": "(the rehearsal takes it when acting)"}])
    sidecar = Path(path).with_suffix(".json")
    taken_at = json.loads(sidecar.read_text()).get("taken_at", "") if sidecar.is_file() else ""
    info = describe(path, taken_at=taken_at)
    return pd.DataFrame([{**info.row(), "path": str(path), "mode": f"{Path(path).stat().st_mode & 0o777:04o}"}])


def taken_table(info: SnapshotInfo) -> pd.DataFrame:
    """The snapshot just taken as a one-row table named ``snapshot-taken``, keyed by member, so
    ``kubebook diff`` compares one run's snapshot with the next (``snapshot-taken:grew:size:10``)."""
    row = {"member": info.member, **info.row()}
    return named(pd.DataFrame([row]), "snapshot-taken", key=["member"],
                 volatile=["file", "taken at", "sha256", "hash", "revision"])


# ---- a second copy, off this host ---------------------------------------------------------------
COPY_COLUMNS = ["file", "copied to", "size", "sha256 of the copy", "verified"]


def _sha256_stream(chunks) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _read_chunks(f, size: int = 1 << 20):
    while chunk := f.read(size):
        yield chunk


def copy(info: SnapshotInfo, destination: str) -> pd.DataFrame:
    """Copy a verified snapshot and its sidecar to ``destination``, then read the copy back and check
    its sha256 against the original's: a table of what was copied ("" destination: nothing asked).

    ``destination`` is a directory or mount (another disk, NFS; files 0600, a directory it creates
    0700) or a URL such as ``s3://bucket/etcd``, written through fsspec and the filesystem the user
    installed for it (s3fs, gcsfs...): papermill's I/O handlers, which carry the notebooks, only
    write text. A copy whose checksum differs is removed and the run fails.
    """
    if not destination:
        return _copy_table([])
    source = Path(info.path)
    if "://" in destination:
        target, digest = _copy_to_url(source, destination.rstrip("/"), info.sha256)
    else:
        target, digest = _copy_to_directory(source, Path(destination).expanduser(), info.sha256)
    if digest != info.sha256:
        raise SnapshotError(f"the copy {target} has sha256 {digest[:16]}…, the snapshot {info.sha256[:16]}…: "
                            "removed; the copy is not trustworthy")
    return _copy_table([{"file": source.name, "copied to": target, "size": info.size_bytes,
                         "sha256 of the copy": digest[:16] + "…", "verified": "sha256 matches"}])


def _copy_table(rows: list[dict]) -> pd.DataFrame:
    # across runs only the verdict is compared: every run copies a new file
    return named(pd.DataFrame(rows, columns=COPY_COLUMNS), "snapshot-copy", key=["verified"],
                 volatile=["file", "copied to", "size", "sha256 of the copy"])


def _copy_to_directory(source: Path, directory: Path, expected: str) -> tuple[str, str]:
    from ..paths import private_dir
    from ..safety import write_private
    private_dir(directory)
    final = directory / source.name
    partial = directory / f".{source.name}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", closefd=False) as out, open(source, "rb") as src:
            for chunk in _read_chunks(src):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    finally:
        os.close(fd)
    with open(partial, "rb") as back:            # read what landed on the other disk, not the page cache's copy
        digest, _ = _sha256_stream(_read_chunks(back))
    if digest != expected:
        partial.unlink(missing_ok=True)
        return str(final), digest
    os.replace(partial, final)
    sidecar = source.with_suffix(".json")
    if sidecar.is_file():
        write_private(final.with_suffix(".json"), sidecar.read_text())
    return str(final), digest


def _copy_to_url(source: Path, base: str, expected: str) -> tuple[str, str]:
    try:
        import fsspec
    except ImportError:
        raise SnapshotError(f"copying to {base} needs fsspec and the filesystem for its scheme "
                            "(pip install s3fs for s3://, gcsfs for gs://)") from None
    target = f"{base}/{source.name}"
    with fsspec.open(target, "wb") as out, open(source, "rb") as src:
        for chunk in _read_chunks(src):
            out.write(chunk)
    with fsspec.open(target, "rb") as back:
        digest, _ = _sha256_stream(_read_chunks(back))
    if digest != expected:
        fs, path = fsspec.core.url_to_fs(target)
        fs.rm(path)
        return target, digest
    sidecar = source.with_suffix(".json")
    if sidecar.is_file():
        with fsspec.open(f"{base}/{sidecar.name}", "w") as out:
            out.write(sidecar.read_text())
    return target, digest
