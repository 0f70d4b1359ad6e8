"""Full etcd restore (disaster recovery), and restoring a snapshot onto a "new machine".

The course's four steps, as named steps of a :class:`~kubebook.plan.Plan`: stop the API
server, move the data directory aside (never delete it), ``etcdutl snapshot restore`` into
an empty directory, start everything again, then verify. Following etcd's recovery guide
for Kubernetes, the restore bumps the revision by 1,000,000,000 and marks it compacted, so
watches and informers notice that history changed instead of silently missing it.

Where the control plane runs differs: a kubeadm node (static Pod manifests under
``/etc/kubernetes/manifests``) or a kubebook lab (processes). Both offer the same verbs.
"""
from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .. import binaries, ownership, paths, process
from ..errors import KubebookError
from ..plan import Plan
from .client import Etcd, parse_registry_key
from .snapshot import describe, save

BUMP_REVISION = 1_000_000_000
KUBEADM_MANIFESTS = Path("/etc/kubernetes/manifests")


class RestoreError(KubebookError):
    pass


@dataclass(frozen=True)
class Member:
    """What ``etcdutl snapshot restore`` needs to rebuild this member as it was."""

    name: str
    data_dir: Path
    initial_cluster: str
    initial_advertise_peer_urls: str
    initial_cluster_token: str = "etcd-cluster"


def restore_command(snapshot: str | Path, member: Member, *, bump: int = BUMP_REVISION) -> list[str]:
    etcdutl = binaries.find("etcdutl")
    return [str(etcdutl or "etcdutl"), "snapshot", "restore", str(snapshot), f"--data-dir={member.data_dir}",
            f"--name={member.name}", f"--initial-cluster={member.initial_cluster}",
            f"--initial-cluster-token={member.initial_cluster_token}",
            f"--initial-advertise-peer-urls={member.initial_advertise_peer_urls}",
            *([f"--bump-revision={bump}", "--mark-compacted"] if bump else [])]


def run_restore(snapshot: str | Path, member: Member, *, bump: int = BUMP_REVISION) -> str:
    """``etcdutl snapshot restore`` into ``member.data_dir``, which must be absent or empty."""
    d = member.data_dir
    if d.exists() and any(d.iterdir()):
        raise RestoreError(f"{d} is not empty: move it aside first (never restore over live data)")
    if binaries.find("etcdutl") is None:
        raise RestoreError("etcdutl not found: install etcd's tools or run `kubebook lab build`")
    proc = subprocess.run(restore_command(snapshot, member, bump=bump), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RestoreError(f"etcdutl snapshot restore failed: {proc.stderr.strip()[-800:]}")
    return f"restored into {d}"


def move_aside(data_dir: Path, stamp: str) -> Path:
    """Rename the data directory out of the way, keeping it whole for a roll-back."""
    if not data_dir.exists():
        return data_dir
    target = data_dir.with_name(f"{data_dir.name}.before-restore-{stamp}")
    os.rename(data_dir, target)
    return target


# ---- where the control plane runs ---------------------------------------------------------
class LabControlPlane:
    """The kubebook lab (``target.lab``): components are processes the lab started and recorded."""

    def __init__(self, lab: Any):
        self.lab = lab
        self.name = lab.name
        peer = f"https://127.0.0.1:{lab.ports.get('etcd-peer')}"
        member = _lab_member_name(lab)
        self.member = Member(name=member, data_dir=lab.etcd_data_dir, initial_cluster=f"{member}={peer}",
                             initial_advertise_peer_urls=peer, initial_cluster_token=lab.name)
        self.others = [row["component"] for row in lab.status() if row["component"] != "etcd"]

    def describe(self) -> dict:
        return {"where": f"kubebook lab {self.name}", "etcd": self.lab.etcd_endpoint, "member": self.member.name,
                "data dir": str(self.member.data_dir)}

    def stop_apiserver(self) -> str:
        # everything that talks to the API goes down with it, as the recovery guide asks
        return "stopped " + (", ".join(c for c in reversed(self.others) if self.lab.stop_component(c)) or "nothing")

    def stop_etcd(self) -> str:
        return "stopped etcd" if self.lab.stop_component("etcd") else "etcd was not running"

    def start_etcd(self) -> str:
        self.lab.start_component("etcd")
        self.lab.wait_ready("etcd")  # fails at once, with etcd's last log line, if it exits
        return "etcd healthy"

    def start_apiserver(self) -> str:
        self.lab.up(nodes=len(self.lab.nodes) or 1, log=lambda m: None)
        return "control plane ready, nodes Ready"

    def etcd(self) -> Etcd:
        return Etcd(**self.lab.etcd_params())

    def api_client(self):
        return self.lab.api_client()

    def commands(self) -> dict[str, str]:
        return {"stop_apiserver": f"kubebook lab: stop {', '.join(reversed(self.others))} (by PID)",
                "stop_etcd": "kubebook lab: stop etcd (by PID)", "start_etcd": "kubebook lab: start etcd",
                "start_apiserver": f"kubebook lab up --name {self.name}"}


def _lab_member_name(lab: Any) -> str:
    """The lab's etcd member name, from the command line of the etcd process the lab recorded."""
    proc = lab.processes.get("etcd")
    if proc is not None and proc.alive():
        for arg in Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0"):
            if arg.startswith(b"--name="):
                return arg.decode().split("=", 1)[1]
    raise RestoreError(f"the etcd of lab {lab.name} is not running, so its member name is unknown: "
                       f"kubebook lab up --name {lab.name}, then run again")


class KubeadmControlPlane:
    """A kubeadm control-plane node: static Pods that the kubelet starts from manifest files.

    Stopping a component moves its manifest out of the manifests directory (the kubelet then
    stops the Pod); starting moves it back. The data directory and member flags are read from
    ``etcd.yaml``.
    """

    def __init__(self, node: str, *, manifests: Path = KUBEADM_MANIFESTS, endpoints: str = "https://127.0.0.1:2379",
                 cacert: str = "", cert: str = "", key: str = "", kubeconfig: str = "/etc/kubernetes/admin.conf"):
        self.name = node
        self.manifests = manifests
        self.held = manifests.parent / "manifests-held-by-kubebook"
        self.etcd_args = dict(endpoints=endpoints, cacert=cacert, cert=cert, key=key)
        self.kubeconfig = kubeconfig
        flags = self._etcd_flags()
        self.member = Member(name=flags.get("name", node), data_dir=Path(flags.get("data-dir", "/var/lib/etcd")),
                             initial_cluster=flags.get("initial-cluster", ""),
                             initial_advertise_peer_urls=flags.get("initial-advertise-peer-urls", ""),
                             initial_cluster_token=flags.get("initial-cluster-token", "etcd-cluster"))

    def _etcd_flags(self) -> dict[str, str]:
        manifest = self.manifests / "etcd.yaml"
        if not manifest.is_file():
            manifest = self.held / "etcd.yaml"
        if not manifest.is_file():
            raise RestoreError(f"no etcd.yaml in {self.manifests}: is this a kubeadm control-plane node?")
        pod = yaml.safe_load(manifest.read_text())
        command = pod["spec"]["containers"][0].get("command", [])
        return dict(a[2:].split("=", 1) for a in command if a.startswith("--") and "=" in a)

    def describe(self) -> dict:
        return {"where": f"kubeadm node {self.name}", "data dir": str(self.member.data_dir),
                "manifests": str(self.manifests)}

    def _hold(self, name: str) -> str:
        self.held.mkdir(mode=0o700, exist_ok=True)
        src = self.manifests / f"{name}.yaml"
        if not src.exists():
            return f"{name}.yaml already held"
        shutil.move(str(src), self.held / src.name)
        return f"moved {src} to {self.held}"

    def _release(self, name: str) -> str:
        src = self.held / f"{name}.yaml"
        if not src.exists():
            return f"{name}.yaml already in place"
        shutil.move(str(src), self.manifests / src.name)
        return f"moved {name}.yaml back to {self.manifests}"

    def _wait_port(self, port: int, *, open_: bool, timeout: float = 180.0) -> None:
        # with the API down there is nothing to watch: poll the component's port on loopback
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(1)
                if (s.connect_ex(("127.0.0.1", port)) == 0) == open_:
                    return
            time.sleep(1)
        raise RestoreError(f"port {port} did not {'open' if open_ else 'close'} within {timeout:.0f}s")

    def stop_apiserver(self) -> str:
        msg = self._hold("kube-apiserver")
        self._wait_port(6443, open_=False)
        return msg

    def stop_etcd(self) -> str:
        msg = self._hold("etcd")
        self._wait_port(2379, open_=False)
        return msg

    def start_etcd(self) -> str:
        msg = self._release("etcd")
        self._wait_port(2379, open_=True)
        return msg

    def start_apiserver(self) -> str:
        msg = self._release("kube-apiserver")
        self._wait_port(6443, open_=True)
        return msg + "; restart kube-controller-manager, kube-scheduler and the kubelets next"

    def etcd(self) -> Etcd:
        return Etcd(**self.etcd_args)

    def api_client(self):
        from ..connect import api_client
        return api_client(self.kubeconfig)

    def commands(self) -> dict[str, str]:
        m = self.manifests
        return {"stop_apiserver": f"mv {m}/kube-apiserver.yaml {self.held}/",
                "stop_etcd": f"mv {m}/etcd.yaml {self.held}/", "start_etcd": f"mv {self.held}/etcd.yaml {m}/",
                "start_apiserver": f"mv {self.held}/kube-apiserver.yaml {m}/"}


def control_plane(target: Any, *, node: str = "", manifests: str | Path = KUBEADM_MANIFESTS, endpoints: str = "",
                  cacert: str = "", cert: str = "", key: str = "", log=print):
    """The control plane a runbook acts on: the lab ``target`` is, else this kubeadm node (its
    static Pod manifests in ``manifests``), with etcd found as :func:`~kubebook.etcd.connect` finds it."""
    from .client import connect
    if target.lab is not None:
        return LabControlPlane(target.lab)
    etcd = connect(endpoints=endpoints, cacert=cacert, cert=cert, key=key, target=target, log=log)
    return KubeadmControlPlane(node or socket.gethostname(), manifests=Path(manifests or KUBEADM_MANIFESTS),
                               endpoints=",".join(e.url for e in etcd.endpoints), **etcd.files,
                               kubeconfig=str(target.kubeconfig or "/etc/kubernetes/admin.conf"))


# ---- the full restore ---------------------------------------------------------------------
def verify(control_plane) -> pd.DataFrame:
    """etcd health, key count, and objects readable through the API (a read: before or after a restore)."""
    from kubernetes import client
    with control_plane.etcd() as etcd:
        health = etcd.endpoint_health()
        keys = etcd.count("/registry/")
    core = client.CoreV1Api(control_plane.api_client())
    namespaces = core.list_namespace().items
    return pd.DataFrame([
        {"check": "etcd endpoint health", "result": "healthy" if health["HEALTH"].all() else "UNHEALTHY"},
        {"check": "keys under /registry/", "result": keys},
        {"check": "namespaces readable through the API", "result": len(namespaces)},
    ])


def full_restore(plan: Plan, control_plane, *, snapshot: str = "", snapshot_dir: str = "", backup_dir: str = "",
                 rehearse: bool = False, data_dir_backup_only: bool = False) -> pd.DataFrame:
    """Restore a snapshot as the whole cluster state, as steps of ``plan`` (confirm names the control plane).

    ``snapshot`` (or the newest in ``snapshot_dir``); with ``rehearse`` (a lab only) one taken
    now. The current state is snapshotted into ``backup_dir`` first, and a failed backup stops
    the restore before anything is stopped, unless ``data_dir_backup_only`` (etcd is what broke and
    cannot be snapshotted): then the data directory moved aside is the only backup. A step that
    fails says where the old data is and how to roll back. Returns the table of steps."""
    from .snapshot import locate, resolve_dir
    target = plan.cluster
    stamp = dt.datetime.now().strftime("%Y%m%d%H%M%S")
    member, cmds = control_plane.member, control_plane.commands()
    aside = member.data_dir.with_name(f"{member.data_dir.name}.before-restore-{stamp}")
    backups = Path(backup_dir).expanduser() if backup_dir else resolve_dir(snapshot_dir, target)
    chosen: dict[str, Path] = {}
    rollback = (f"the data from before is kept at {aside}; to roll back: stop etcd, mv {aside} {member.data_dir}, "
                "start etcd and the API server")

    if rehearse:
        target.require_lab(control_plane.name)
        rehearsal_dir = resolve_dir(snapshot_dir, target)

        def take() -> str:
            with control_plane.etcd() as etcd:
                chosen["snapshot"] = Path(save(etcd, rehearsal_dir, progress=False).path)
            return str(chosen["snapshot"])

        plan.step("rehearsal-snapshot", "take the snapshot to restore now (a rehearsal)", take,
                  command=f"etcdctl snapshot save {rehearsal_dir}/<member>-etcd_<time>.db")
        shown = "<the rehearsal's snapshot>"
    else:
        chosen["snapshot"] = locate(snapshot, snapshot_dir=snapshot_dir, target=target)
        shown = str(chosen["snapshot"])

    def backup_current() -> str:
        try:
            with control_plane.etcd() as etcd:
                return save(etcd, backups, host=f"{member.name}-before-restore", progress=False).path
        except Exception as exc:  # noqa: BLE001 - whatever failed, there is no backup
            if not data_dir_backup_only:
                raise ownership.BackupFailed(
                    f"the snapshot of the current state into {backups} failed ({str(exc).splitlines()[0][:160]}); "
                    "nothing was stopped or changed. If etcd itself is what broke, run again with "
                    f"data_dir_backup_only=True (its data directory is then kept at {aside.name})") from None
            return f"etcd cannot be snapshotted ({str(exc)[:120]}); its data directory is kept at {aside}"

    def restore() -> str:
        try:
            return run_restore(chosen["snapshot"], member)
        except RestoreError as exc:
            raise RestoreError(f"{exc}; {rollback}") from None

    def start(action):
        def run() -> str:
            try:
                return action()
            except Exception as exc:  # noqa: BLE001 - any failure here leaves the cluster down: say what to do
                raise RestoreError(f"{str(exc).splitlines()[0][:300]}; the restored data is in {member.data_dir}, "
                                   f"{rollback}") from None
        return run

    plan.step("verify-snapshot", f"check {Path(shown).name}: sha256 and etcdutl snapshot status",
              lambda: f"revision {describe(chosen['snapshot']).revision}", command=f"etcdutl snapshot status {shown}")
    plan.step("backup-current", f"snapshot the current state into {backups} (a failed backup stops here)",
              backup_current, command=f"etcdctl snapshot save {backups}/{member.name}-before-restore-etcd_<time>.db")
    plan.step("stop-apiserver", "stop the API server (and what talks to it)", control_plane.stop_apiserver,
              command=cmds["stop_apiserver"])
    plan.step("stop-etcd", "stop etcd", control_plane.stop_etcd, command=cmds["stop_etcd"])
    plan.step("move-data-dir", f"move {member.data_dir} aside to {aside.name} (kept, not deleted)",
              lambda: str(move_aside(member.data_dir, stamp)), command=f"mv {member.data_dir} {aside}")
    plan.step("restore", f"restore the snapshot into an empty {member.data_dir}, revision +{BUMP_REVISION:,}",
              restore, command=" ".join(restore_command(shown, member)))
    plan.step("start-etcd", "start etcd on the restored data", start(control_plane.start_etcd),
              command=cmds["start_etcd"])
    plan.step("start-apiserver", "start the API server and the rest of the control plane",
              start(control_plane.start_apiserver), command=cmds["start_apiserver"])
    plan.check("verify", "etcd health, key count and reads through the API",
               lambda: "; ".join(f"{r['check']}: {r['result']}" for r in verify(control_plane).to_dict("records")))
    return plan.table()


# ---- the course's "new machine" restore ----------------------------------------------------
@dataclass
class ScratchMember:
    """A single-member etcd restored from a snapshot, on loopback, separate from any cluster.

    It is a scratch process of the Python process that started it (see :mod:`kubebook.process`):
    stopped by :meth:`stop` or the ``with`` block, and in any case when that process ends (a
    notebook kernel shut down after a failing cell, or killed), so a plain-HTTP etcd holding every
    Secret of the snapshot never outlives its runbook."""

    directory: Path
    port: int
    child: process.Child | None = field(default=None, repr=False)
    log: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    @property
    def running(self) -> bool:
        return bool(self.child and self.child.running)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def etcd(self) -> Etcd:
        return Etcd(self.endpoint, cacert=None, cert=None, key=None)

    def stop(self) -> None:
        if self.child:
            process.stop(self.child.record, timeout=20)

    def __enter__(self) -> "ScratchMember":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def restore_scratch(snapshot: str | Path, directory: str | Path, *, timeout: float = 60.0) -> ScratchMember:
    """Restore ``snapshot`` into a new ``directory`` and run it as a one-member etcd on loopback.

    The course starts it with ``--force-new-cluster``; a restored data directory already holds a
    new one-member cluster, so that flag is not needed. The scratch member speaks plain HTTP on
    127.0.0.1 only: it is for reading keys, not for serving Kubernetes.
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise RestoreError(f"{directory} is not empty: give a new directory")
    etcd_bin = binaries.find("etcd")
    if etcd_bin is None:
        raise RestoreError("etcd not found: install etcd or run `kubebook lab build`")
    from ..ports import free_loopback_port
    peer_port = free_loopback_port()
    port = free_loopback_port(avoid=[peer_port])
    peer = f"http://127.0.0.1:{peer_port}"
    member = Member(name="recovery", data_dir=directory / "data", initial_cluster=f"recovery={peer}",
                    initial_advertise_peer_urls=peer, initial_cluster_token="kubebook-recovery")
    directory.mkdir(parents=True, exist_ok=True)
    run_restore(snapshot, member, bump=0)
    log = directory / "etcd.log"
    url = f"http://127.0.0.1:{port}"
    child = process.start([etcd_bin, "--name=recovery", f"--data-dir={member.data_dir}",
                           f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
                           f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                           f"--initial-cluster=recovery={peer}", "--listen-metrics-urls=http://127.0.0.1:0"],
                          log=log, scratch=True)
    scratch = ScratchMember(directory=directory, port=port, child=child, log=log)
    try:
        _wait_healthy(scratch, timeout)
    except BaseException:
        scratch.stop()
        raise
    return scratch


def _wait_healthy(scratch: ScratchMember, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not scratch.running:
            raise RestoreError(f"the restored etcd exited ({scratch.child.popen.returncode}); see {scratch.log}")
        try:
            with scratch.etcd() as etcd:
                if etcd.is_healthy():
                    return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RestoreError(f"the restored etcd was not healthy within {timeout:.0f}s; see {scratch.log}")
        time.sleep(0.2)  # nothing to watch until it answers


def key_summary(etcd: Etcd, prefix: str = "/registry/") -> pd.DataFrame:
    """Keys per resource (and how many namespaces they span), like `etcdctl get / --prefix --keys-only`."""
    rows = [parse_registry_key(k) for k in etcd.keys(prefix)]
    frame = pd.DataFrame(rows, columns=["resource", "namespace", "name"])
    if frame.empty:
        return frame
    return (frame.groupby("resource").agg(keys=("name", "count"), namespaces=("namespace", lambda s: s[s != ""]
                                                                               .nunique()))
            .sort_values("keys", ascending=False).reset_index())


# ---- the scratch member, as the runbook drives it -------------------------------------------
def open_scratch(snapshot: str | Path, directory: str | Path = "", *, timeout: float = 60.0) -> ScratchMember:
    """:func:`restore_scratch` into ``directory`` (made 0700; "": a fresh one under the temp dir),
    and make sure the scratch member ends with this process: it serves every Secret of the snapshot
    over plain HTTP, so it must not outlive a run that failed half-way (papermill shuts the kernel
    down after a failed cell, and the exit handler stops the member then). :func:`finish` ends it
    as the runbook's last step."""
    where = paths.private_dir(Path(directory).expanduser()) if directory else \
        Path(tempfile.mkdtemp(prefix="etcd-recovery-"))
    scratch = restore_scratch(snapshot, where, timeout=timeout)
    atexit.register(scratch.stop)
    print(f"restored etcd: {scratch.endpoint} (pid {scratch.pid}), data in {scratch.directory}")
    return scratch


def finish(scratch: ScratchMember, *, keep_running: bool = False) -> str:
    """The scratch member's last step: stopped (by its PID), or left running on purpose."""
    if keep_running:
        atexit.unregister(scratch.stop)
        return f"still running: {scratch.endpoint} (pid {scratch.pid}); stop it with kill {scratch.pid}"
    scratch.stop()
    atexit.unregister(scratch.stop)
    alive = scratch.child is not None and scratch.child.record.alive()
    return f"pid {scratch.pid} still running" if alive else f"stopped: pid {scratch.pid} is gone"
