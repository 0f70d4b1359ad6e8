"""One lab: its directory (kubeadm's file names), ports, recorded processes and life cycle.

Every process the lab starts is recorded with its PID and kernel start time in ``state.json``
before anything waits on it; ``down`` stops exactly those, never anything matched by name.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .. import binaries, process
from ..errors import LabError
from ..pki import ClusterPKI
from . import addons, baseline, memory, phases as up_phases, probes
from .components import BY_NAME, NAMES
from .nodes import node_names, node_order
from ..ports import LOOPBACK

Log = Callable[[str], None]
_stderr: Log = lambda message: print(message, file=sys.stderr)  # noqa: E731


@dataclass
class Lab:
    """One lab: its directory, ports and processes. Obtain with :func:`kubebook.lab.get`."""

    name: str
    dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, process.Record] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    binaries: dict[str, str] = field(default_factory=dict)

    # ---- paths and addresses, named as kubeadm names them ------------------------------------
    @property
    def pki(self) -> ClusterPKI:
        return ClusterPKI(self.dir / "pki")

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.conf"

    @property
    def etcd_data_dir(self) -> Path:
        return self.dir / "etcd-data"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def etcd_endpoint(self) -> str:
        return f"https://{LOOPBACK}:{self.ports['etcd']}"

    @property
    def etcd_ca(self) -> Path:
        return self.pki.root / "etcd" / "ca.crt"

    @property
    def etcd_cert(self) -> Path:
        return self.pki.root / "etcd" / "healthcheck-client.crt"

    @property
    def etcd_key(self) -> Path:
        return self.pki.root / "etcd" / "healthcheck-client.key"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.ports['kube-apiserver']}"

    @property
    def context(self) -> str:
        return f"kubernetes-admin@{self.name}"

    def log_file(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def last_log_line(self, component: str) -> str:
        return process.last_line(self.log_file(component))

    def bin(self, name: str) -> str:
        if name in self.binaries:
            return self.binaries[name]
        found = binaries.find(name)
        if not found:
            raise LabError(f"{name} not found: run `kubebook lab build` (or set KUBEBOOK_BIN_DIR)")
        return str(found)

    def etcd_params(self) -> dict[str, str]:
        """Parameters for the etcd runbooks (endpoint and TLS client files)."""
        return {"endpoints": self.etcd_endpoint, "cacert": str(self.etcd_ca),
                "cert": str(self.etcd_cert), "key": str(self.etcd_key)}

    def env(self) -> dict[str, str]:
        """Environment for kubectl and etcdctl against this lab."""
        return {"KUBECONFIG": str(self.kubeconfig), "ETCDCTL_ENDPOINTS": self.etcd_endpoint,
                "ETCDCTL_CACERT": str(self.etcd_ca), "ETCDCTL_CERT": str(self.etcd_cert),
                "ETCDCTL_KEY": str(self.etcd_key)}

    def api_client(self):
        from ..connect import api_client
        return api_client(self.kubeconfig)

    # ---- state -----------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def save(self) -> None:
        state = {"name": self.name, "ports": self.ports, "nodes": self.nodes, "binaries": self.binaries,
                 "processes": {k: p.as_dict() for k, p in self.processes.items()}}
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_file)  # a reader never sees half a file

    def refresh(self) -> "Lab":
        """Re-read state.json: another Lab object (a runbook, the CLI) may have restarted components."""
        if self.state_file.is_file():
            state = json.loads(self.state_file.read_text())
            self.ports = state.get("ports", {})
            self.nodes = state.get("nodes", [])
            self.binaries = state.get("binaries", {})
            self.processes = {k: process.Record.from_dict(v) for k, v in state.get("processes", {}).items()}
        return self

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up`, `down` or `reset` at a time per lab; state re-read once the lock is held."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.refresh()
            yield

    # ---- status ----------------------------------------------------------------------------
    def component_state(self, component: str) -> str:
        record = self.processes.get(component)
        if record is None:
            return "stopped"
        return "running" if record.alive() else "crashed"

    def status(self) -> list[dict]:
        """One row per component: state (running/crashed/stopped), pid, port, resident memory, log file."""
        self.refresh()
        rows = []
        for c in NAMES:
            state, record = self.component_state(c), self.processes.get(c)
            usage = memory.usage(record) if state == "running" else {}
            row = {"component": c, "state": state, "pid": record.pid if record else None,
                   "port": self.ports.get(c), "rss_mib": usage.get("rss_mib"), "log": str(self.log_file(c))}
            if state == "crashed":
                row["last_log_line"] = self.last_log_line(c)
            rows.append(row)
        return rows

    def is_running(self) -> bool:
        self.refresh()
        return bool(self.processes) and all(self.component_state(c) == "running" for c in NAMES)

    def memory(self) -> list[dict]:
        """Resident memory of each running process of the lab (add-ons included), from /proc."""
        self.refresh()
        recorded = {**self.processes, **addons.records(self)}
        return [{"process": name, "pid": r.pid, **memory.usage(r)} for name, r in recorded.items() if r.alive()]

    # ---- components ------------------------------------------------------------------------
    def start_component(self, component: str, *, without: tuple[str, ...] = ()) -> process.Record:
        """Start one component now, recorded before this returns (no wait). A running one is kept.
        ``without``: flags left out (by prefix), to stage a control plane that lacks something,
        e.g. CSR signing (tests)."""
        self.refresh()
        if self.component_state(component) == "running":
            return self.processes[component]
        command = [arg for arg in BY_NAME[component].command(self) if not (without and arg.startswith(without))]
        self.logs_dir.mkdir(parents=True, exist_ok=True)

        def remember(record: process.Record) -> None:
            self.processes[component] = record
            self.save()
        try:
            child = process.start(command, log=self.log_file(component), cwd=self.dir,
                                  env={**os.environ, **BY_NAME[component].env}, on_record=remember,
                                  banner=f"starting {component}")
        except process.StartError as exc:
            raise LabError(f"{component}: {exc}: {self.last_log_line(component)}") from exc
        return child.record

    def stop_component(self, component: str, *, timeout: float = 20.0, kill: bool = False) -> bool:
        """Stop one component we started (SIGTERM, SIGKILL after ``timeout``). False if not running.
        The record goes only once the process is gone."""
        self.refresh()
        stopped = process.stop(self.processes.get(component), timeout=timeout, kill=kill)
        if self.processes.pop(component, None) is not None:
            self.save()
        return stopped

    def healthy(self, component: str) -> bool:
        """One health check of ``component`` (see :data:`kubebook.lab.components.COMPONENTS`)."""
        return probes.healthy(self, BY_NAME[component].health)

    def wait_ready(self, component: str, *, deadline: float | None = None, timeout: float = 60.0) -> None:
        """Block until ``component`` answers its health check; fail at once if it exits."""
        probes.wait_ready(self, component, deadline if deadline is not None else time.monotonic() + timeout)

    # ---- life cycle ------------------------------------------------------------------------
    def up(self, *, nodes: int = 3, timeout: float = 120.0, log: Log = _stderr,
           phases: Iterable[str] | None = None) -> "Lab":
        """Start (or resume) the lab and wait until the API is ready and every node is Ready.

        Idempotent: running components are left alone, crashed or stopped ones are started,
        existing certificates, data and nodes are reused. ``phases`` runs only those (by name).
        """
        selected = up_phases.select(phases)
        with self._locked():
            self.nodes = sorted(set(self.nodes) | set(node_names(nodes)), key=node_order)
            up_phases.run(up_phases.Run(self, up_phases.deadline(timeout), log), selected)
            self.save()
        return self

    def down(self, *, keep_data: bool = False, log: Log = _stderr) -> list[str]:
        """Stop every process this lab started (add-ons, then components in reverse order);
        remove the lab unless ``keep_data``."""
        stopped = []
        with self._locked():
            for name in addons.stop(self):
                log(f"[lab {self.name}] stopped add-on {name}")
            for c in reversed(NAMES):
                if self.stop_component(c):
                    stopped.append(c)
                    log(f"[lab {self.name}] stopped {c}")
            if not keep_data:
                shutil.rmtree(self.dir, ignore_errors=True)
                log(f"[lab {self.name}] removed {self.dir}")
        return stopped

    def reset(self, *, full: bool = False, timeout: float = 60.0, log: Log = _stderr) -> dict:
        """Back to the state `up` left the lab in (nodes, labels, taints, namespaces, objects), from
        the baseline taken then; certificates and processes are kept. See :mod:`.baseline`."""
        with self._locked():
            return baseline.reset(self, full=full, deadline=time.monotonic() + timeout, log=log)
