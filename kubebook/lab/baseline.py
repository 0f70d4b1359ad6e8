"""`lab reset`: a lab back to the state `lab up` left it in, from a baseline taken then.

The last phase of `up` takes the baseline: an etcd snapshot (``baseline/etcd.db``) and the
``/registry`` keys at that snapshot's revision (``baseline/registry.json``), both 0600.

**Reset replays the baseline** (the default): keys `up` did not leave are deleted and keys it left
are written back where they differ, in one etcd transaction. etcd does not go back in time; its
revision moves forward, so the apiserver's watch cache and every informer (controllers,
scheduler, kwok) see ordinary delete and update events, and no process restarts. Leases and
Events are heartbeats and history: never written back (those `up` did not leave are deleted).

**``full=True`` restores the snapshot** instead, for an etcd that cannot serve, and restarts the
control plane, as etcd's recovery guide for Kubernetes asks. The apiserver and the controllers
hold caches built from the history being discarded: kept running across a restore, the
scheduler's cache was seen corrupted ("Pod updated on a different node than previously added
to"; new Pods stayed Pending) and the apiserver kept attaching Events to etcd leases the restored
etcd never had ("requested lease not found"). The restore uses ``etcdutl snapshot restore
--bump-revision --mark-compacted``: without the bump, etcd would hand out again revisions that
clients have already seen (a watch or an informer outside the lab would silently miss changes,
the apiserver's watch cache would serve the newer state); with it, the revision jumps past every
one a client has seen and the history before it reads as compacted, so they get "resource version
too old" and relist. It takes as long as starting the control plane, against a fraction of a
second for a replay.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import LabError
from ..paths import private_dir
from ..safety import write_private
from .components import MASTER, NAMES

if TYPE_CHECKING:
    from .lab import Lab

PREFIX = "/registry/"
VOLATILE = ("/registry/events/", "/registry/leases/")  # heartbeats and history: never written back
BUMP_UNKNOWN = 1_000_000_000  # etcd's recovery guide, when the revisions clients saw are unknown


def directory(lab: "Lab") -> Path:
    return lab.dir / "baseline"


def current(lab: "Lab") -> dict | None:
    """The baseline's record, if one was taken for the lab's present set of nodes."""
    try:
        meta = json.loads((directory(lab) / "baseline.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("nodes") == lab.nodes and (directory(lab) / "registry.json").is_file() else None


def _client(lab: "Lab"):
    import pyetcd
    return pyetcd.client(host="127.0.0.1", port=lab.ports["etcd"], ca_cert=str(lab.etcd_ca),
                         cert_cert=str(lab.etcd_cert), cert_key=str(lab.etcd_key), timeout=10,
                         # a lab with thousands of Pods answers a /registry range beyond gRPC's 4 MiB default
                         grpc_options=[("grpc.max_receive_message_length", 512 << 20)])


def take(lab: "Lab") -> dict:
    """Snapshot etcd and keep the /registry keys at the snapshot's revision."""
    d = private_dir(directory(lab), tighten=True)
    partial = d / ".etcd.db.partial"
    etcd = _client(lab)
    try:
        write_private(partial, b"")
        with open(partial, "wb") as out:
            etcd.snapshot(out)
        revision = _snapshot_revision(lab, partial)
        keys = {meta.key.decode(): base64.b64encode(value).decode()
                for value, meta in etcd.get_prefix(PREFIX, revision=revision)}
    finally:
        etcd.close()
    write_private(d / "registry.json", json.dumps(keys))
    partial.replace(d / "etcd.db")
    meta = {"revision": revision, "keys": len(keys), "nodes": lab.nodes,
            "taken_at": dt.datetime.now().isoformat(timespec="seconds")}
    write_private(d / "baseline.json", json.dumps(meta, indent=2))
    return meta


def _snapshot_revision(lab: "Lab", path: Path) -> int:
    out = subprocess.run([lab.bin("etcdutl"), "snapshot", "status", str(path), "-w", "json"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise LabError(f"etcdutl snapshot status {path}: {out.stderr.strip()[-300:]}")
    return int(json.loads(out.stdout)["revision"])


def replay_plan(baseline: dict[str, bytes], now: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """Keys to delete (not in the baseline) and to write back (missing or different, not volatile)."""
    deletes = sorted(k for k in now if k not in baseline)
    puts = sorted(k for k, v in baseline.items() if now.get(k) != v and not k.startswith(VOLATILE))
    return deletes, puts


def reset(lab: "Lab", *, full: bool, deadline: float, log: Callable[[str], None]) -> dict:
    from . import addons, phases
    meta = current(lab)
    if meta is None:
        raise LabError(f"lab {lab.name} has no baseline for its nodes (it was started before `lab reset` "
                       f"existed, or with other nodes): `kubebook lab down --name {lab.name}` then `lab up`")
    started = time.monotonic()
    for name in addons.stop(lab):  # their registrations and RBAC are not in the baseline
        log(f"[reset] stopped add-on {name}")
    rest = [p for p in phases.PHASES if p.name != "baseline"]
    if full:
        result = _restore_snapshot(lab, meta, log)
        phases.run(phases.Run(lab, deadline, log), rest)
    else:
        if not lab.is_running():
            phases.run(phases.Run(lab, deadline, log), rest)
        result = _replay(lab, log)
    _wait_served(lab, result["revision"], deadline)
    result["seconds"] = round(time.monotonic() - started, 2)
    log(f"[reset] lab {lab.name} is back to its baseline of {meta['taken_at']} in {result['seconds']} s")
    return result


def _replay(lab: "Lab", log) -> dict:
    baseline = {k: base64.b64decode(v) for k, v in json.loads((directory(lab) / "registry.json").read_text()).items()}
    etcd = _client(lab)
    deleted = written = 0
    try:
        for attempt in range(2):  # the second pass: objects a controller created while the first ran
            now = {meta.key.decode(): value for value, meta in etcd.get_prefix(PREFIX)}
            deletes, puts = replay_plan(baseline, now)
            if attempt:
                puts = []
            if not deletes and not puts:
                break
            _commit(etcd, deletes, [(k, baseline[k]) for k in puts])
            deleted, written = deleted + len(deletes), written + len(puts)
        revision = etcd.get_response(PREFIX).header.revision
    finally:
        etcd.close()
    log(f"[reset] replayed the baseline: {deleted} keys deleted, {written} written back (revision {revision})")
    return {"method": "replay", "deleted": deleted, "written": written, "revision": revision}


def _commit(etcd, deletes: list[str], puts: list[tuple[str, bytes]]) -> None:
    """Everything in one transaction, so watchers see the reset at one revision; in slices etcd
    accepts (--max-txn-ops, --max-request-bytes) when it refuses one that large."""
    import grpc
    ops = [etcd.transactions.delete(k) for k in deletes] + [etcd.transactions.put(k, v) for k, v in puts]
    try:
        etcd.transaction(compare=[], success=ops, failure=[])
        return
    except grpc.RpcError as exc:
        if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
            raise
    sizes = [len(k) for k in deletes] + [len(k) + len(v) for k, v in puts]
    start = 0
    while start < len(ops):
        end, size = start, 0
        while end < len(ops) and end - start < 100 and (end == start or size + sizes[end] < 1 << 20):
            size += sizes[end]
            end += 1
        etcd.transaction(compare=[], success=ops[start:end], failure=[])
        start = end


def _restore_snapshot(lab: "Lab", meta: dict, log) -> dict:
    try:
        etcd = _client(lab)
        try:
            seen = etcd.get_response(PREFIX).header.revision
        finally:
            etcd.close()
        bump = max(seen - meta["revision"], 0) + 10_000
    except Exception:  # etcd cannot answer (the reason for a full reset): take etcd's large margin
        bump = BUMP_UNKNOWN
    for component in reversed(NAMES):  # nothing they hold in memory may survive; nothing they hold on disk matters
        lab.stop_component(component, kill=True)
    aside = lab.etcd_data_dir.with_name("etcd-data.before-reset")
    shutil.rmtree(aside, ignore_errors=True)
    if lab.etcd_data_dir.exists():
        lab.etcd_data_dir.rename(aside)
    peer = f"https://127.0.0.1:{lab.ports['etcd-peer']}"
    out = subprocess.run([lab.bin("etcdutl"), "snapshot", "restore", str(directory(lab) / "etcd.db"),
                          f"--data-dir={lab.etcd_data_dir}", f"--name={MASTER}", f"--initial-cluster={MASTER}={peer}",
                          f"--initial-cluster-token={lab.name}", f"--initial-advertise-peer-urls={peer}",
                          f"--bump-revision={bump}", "--mark-compacted"], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        if aside.exists() and not lab.etcd_data_dir.exists():
            aside.rename(lab.etcd_data_dir)
        raise LabError(f"etcdutl snapshot restore: {out.stderr.strip()[-300:]}")
    shutil.rmtree(aside, ignore_errors=True)
    log(f"[reset] restored {directory(lab) / 'etcd.db'} with --bump-revision={bump} --mark-compacted")
    return {"method": "snapshot restore", "bump": bump, "revision": meta["revision"] + bump}


def _wait_served(lab: "Lab", revision: int, deadline: float) -> None:
    """Until the apiserver serves namespaces and nodes at ``revision`` or later: a list without a
    resourceVersion is read from the watch cache once it has caught up with etcd."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError
    core = client.CoreV1Api(lab.api_client())
    while True:
        try:
            if all(int(listing.metadata.resource_version) >= revision
                   for listing in (core.list_namespace(), core.list_node())):
                return
        except (ApiException, HTTPError):
            pass  # the apiserver is reconnecting to a restarted etcd
        if time.monotonic() > deadline:
            raise LabError(f"lab {lab.name}: the apiserver did not serve revision {revision} before the timeout")
        time.sleep(0.05)  # a cache catching up has nothing to watch yet
