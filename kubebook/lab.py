"""The local lab: a real control plane on loopback, built from upstream binaries.

etcd (TLS, client certificates required), kube-apiserver (Node,RBAC), kube-controller-manager
(node CIDRs, CSR signing), kube-scheduler and kwok (simulated kubelets) run as processes of
this machine, each listening on 127.0.0.1 on a port chosen free, so several labs run side
by side. Certificates follow kubeadm's layout under ``<lab>/pki``.

    with kubebook.lab.running() as lab:
        api = lab.api_client()

Every process the lab starts is recorded with its PID and start time in ``state.json``;
``down`` stops exactly those, never anything matched by name.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from kubernetes import client as k8s  # imported here, not while the lab is starting: it takes ~1 s

from . import binaries, kubeconfig as kcfg, versions
from .errors import LabError
from .pki import ClusterPKI
from .safety import write_private

LOOPBACK = "127.0.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
MASTER = "k8s-master"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
PORT_NAMES = ("etcd", "etcd-peer", "etcd-metrics", "kube-apiserver", "kube-controller-manager",
              "kube-scheduler", "kwok")
# kubeconfig file per component identity, as kubeadm names them in /etc/kubernetes
IDENTITIES = {
    "admin.conf": ("kubernetes-admin", ("system:masters",)),
    "controller-manager.conf": ("system:kube-controller-manager", ()),
    "scheduler.conf": ("system:kube-scheduler", ()),
    # kwok plays every kubelet at once, so the Node authorizer's one-node rules cannot fit it.
    "kwok.conf": ("kubebook:kwok-controller", ("system:masters",)),
}


def labs_root() -> Path:
    default = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "kubebook" / "labs"
    return Path(os.environ.get("KUBEBOOK_LAB_ROOT", default))


def node_names(count: int) -> list[str]:
    """The course's nodes: k8s-master, k8s-slave1, k8s-slave2, ... (count in total)."""
    if count < 1:
        raise LabError("a lab needs at least one node")
    return [MASTER] + [f"k8s-slave{i}" for i in range(1, count)]


def _ephemeral_port_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Listening ports come from below the kernel's ephemeral range: a port the kernel hands out for
# port 0 can be taken again a moment later by any outgoing connection (the apiserver opens many
# to etcd), so the component that was meant to listen there fails with "address already in use".
LISTEN_PORTS = range(20000, max(20001, min(_ephemeral_port_floor(), 32768)))


def free_loopback_port(avoid: Iterable[int] = ()) -> int:
    """A loopback port nothing listens on, outside the ephemeral range and not in ``avoid``."""
    avoid = set(avoid) | _ports_of_other_labs()
    start = random.randrange(len(LISTEN_PORTS))  # a random start keeps parallel labs apart
    for port in (*LISTEN_PORTS[start:], *LISTEN_PORTS[:start]):
        if port not in avoid and _port_free(port):
            return port
    with socket.socket() as s:  # the range is exhausted: let the kernel choose
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _ports_of_other_labs() -> set[int]:
    """Ports recorded by every lab on this machine, so a stopped lab keeps its ports to come back to."""
    ports: set[int] = set()
    for state in labs_root().glob("*/state.json"):
        try:
            ports.update(int(p) for p in json.loads(state.read_text()).get("ports", {}).values())
        except (OSError, ValueError, AttributeError):
            continue
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), or None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class Process:
    pid: int
    start_time: int
    binary: str

    def alive(self) -> bool:
        """Still the very process we started (same PID and start time), and not a zombie."""
        return _proc_start_time(self.pid) == self.start_time


_CHILDREN: dict[int, subprocess.Popen] = {}  # reaped when stopped, so they do not linger as zombies


@dataclass
class Lab:
    """One lab: its directory, ports and processes. Obtain with :func:`get`."""

    name: str
    dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    binaries: dict[str, str] = field(default_factory=dict)

    # ---- paths, named as kubeadm names them -------------------------------------------------
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
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "ETCDCTL_ENDPOINTS": self.etcd_endpoint,
            "ETCDCTL_CACERT": str(self.etcd_ca),
            "ETCDCTL_CERT": str(self.etcd_cert),
            "ETCDCTL_KEY": str(self.etcd_key),
        }

    def api_client(self):
        from .connect import api_client
        return api_client(self.kubeconfig)

    # ---- state ----------------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.dir / "state.json"

    def _save(self) -> None:
        state = {"name": self.name, "ports": self.ports, "nodes": self.nodes, "binaries": self.binaries,
                 "processes": {k: vars(p) for k, p in self.processes.items()}}
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self._state_file)

    def refresh(self) -> "Lab":
        """Re-read ports and processes from state.json: another Lab object (a runbook, the CLI)
        may have restarted components since this one was loaded."""
        if self._state_file.is_file():
            state = json.loads(self._state_file.read_text())
            self.ports = state.get("ports", {})
            self.nodes = state.get("nodes", [])
            self.binaries = state.get("binaries", {})
            self.processes = {k: Process(**v) for k, v in state.get("processes", {}).items()}
        return self

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up` or `down` at a time per lab; state re-read once the lock is held."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.refresh()
            yield

    # ---- status ---------------------------------------------------------------------------
    def component_state(self, component: str) -> str:
        proc = self.processes.get(component)
        if proc is None:
            return "stopped"
        return "running" if proc.alive() else "crashed"

    def status(self) -> list[dict]:
        """One row per component: state (running/crashed/stopped), pid, port, log file."""
        self.refresh()
        rows = []
        for c in COMPONENTS:
            state = self.component_state(c)
            proc = self.processes.get(c)
            row = {"component": c, "state": state, "pid": proc.pid if proc else None,
                   "port": self.ports.get(c), "log": str(self.log_file(c))}
            if state == "crashed":
                row["last_log_line"] = _last_line(self.log_file(c))
            rows.append(row)
        return rows

    def is_running(self) -> bool:
        self.refresh()
        return bool(self.processes) and all(self.component_state(c) == "running" for c in COMPONENTS)

    # ---- up -------------------------------------------------------------------------------
    def up(self, *, nodes: int = 3, timeout: float = 120.0,
           log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> "Lab":
        """Start (or resume) the lab and wait until the API is ready and every node is Ready.

        Idempotent: running components are left alone, crashed or stopped ones are started,
        existing certificates, data and nodes are reused.
        """
        with self._locked():
            located = binaries.ensure(log=log)
            self.binaries = {k: str(v) for k, v in located.items()}
            self.nodes = sorted(set(self.nodes) | set(node_names(nodes)), key=_node_order)
            deadline = time.monotonic() + timeout
            self._phase("certs", log, self._ensure_certs)
            resuming = self.component_state("kube-apiserver") != "running"
            try:
                self._start_all(deadline, log)
            except LabError as exc:
                # Another program took a chosen port between our check and the component's bind.
                if "address already in use" not in str(exc):
                    raise
                log(f"[lab {self.name}] a port was taken meanwhile ({exc}); choosing new ports")
                for c in reversed(COMPONENTS):
                    self.stop_component(c)
                self._start_all(deadline, log)
            if resuming:
                self._phase("stale-addons", log, self._drop_stale_addon_registrations)
            self._phase("wait-ready", log, lambda: self._wait_ready(deadline))
            self._save()
        return self

    def _drop_stale_addon_registrations(self) -> None:
        """Add-ons (metrics-server for the HPA runbooks) stop with the apiserver they serve; an
        APIService left registered for one would be Unavailable, and an unavailable aggregated API
        blocks discovery and namespace deletion. Runbooks register them again when they need them."""
        from kubernetes.client.exceptions import ApiException
        registrations = k8s.ApiregistrationV1Api(self.api_client())
        for svc in registrations.list_api_service(label_selector="kubebook.io/addon").items:
            try:
                registrations.delete_api_service(svc.metadata.name)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def _start_all(self, deadline: float, log) -> None:
        self._phase("ports", log, self._ensure_ports)
        self._phase("kubeconfigs", log, self._ensure_kubeconfigs)
        # Start everything at once: each component retries its upstream (apiserver -> etcd,
        # the rest -> apiserver) until it answers, so their start-ups overlap.
        for c in COMPONENTS:
            self._start(c, log)
        for c in ("etcd", "kube-apiserver"):
            self.wait_ready(c, deadline=deadline)
        self._phase("nodes", log, self._ensure_nodes)
        for c in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self.wait_ready(c, deadline=deadline)

    def _phase(self, name: str, log, fn) -> None:
        log(f"[lab {self.name}] {name}")
        try:
            fn()
        except LabError:
            raise
        except Exception as exc:  # wrap with the phase name, as kubeadm does
            raise LabError(f"lab {self.name}: phase {name} failed: {exc}") from exc

    def _ensure_certs(self) -> None:
        self.pki.ensure(node_name=MASTER)

    def _ensure_ports(self) -> None:
        for name in PORT_NAMES:
            owner = name if name in COMPONENTS else "etcd"
            running = self.component_state(owner) == "running"
            if name in self.ports and (running or _port_free(self.ports[name])):
                continue
            self.ports[name] = free_loopback_port(avoid=self.ports.values())
        self._save()

    def _ensure_kubeconfigs(self) -> None:
        pki = self.pki
        ca_pem = pki.ca_crt.read_bytes()
        for filename, (cn, orgs) in IDENTITIES.items():
            path = self.dir / filename
            if path.is_file():
                config = kcfg.load(path)
                if config["clusters"][0]["cluster"]["server"] != self.server:
                    config["clusters"][0]["cluster"]["server"] = self.server  # a port changed
                    kcfg.write(path, config)
                continue
            pair = pki.client(cn, orgs)
            user = cn if filename != "admin.conf" else "kubernetes-admin"
            context = self.context if filename == "admin.conf" else f"{cn}@{self.name}"
            kcfg.write(path, kcfg.build(server=self.server, ca_pem=ca_pem, cert_pem=pair.cert_pem,
                                        key_pem=pair.key_pem, cluster=self.name, user=user, context=context))

    def _command(self, component: str) -> list[str]:
        p, d, pki = self.ports, self.dir, self.pki.root
        if component == "etcd":
            peer = f"https://{LOOPBACK}:{p['etcd-peer']}"
            return [self.bin("etcd"), f"--name={MASTER}", f"--data-dir={self.etcd_data_dir}",
                    f"--listen-client-urls={self.etcd_endpoint}", f"--advertise-client-urls={self.etcd_endpoint}",
                    f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster={MASTER}={peer}", f"--initial-cluster-token={self.name}",
                    f"--listen-metrics-urls=http://{LOOPBACK}:{p['etcd-metrics']}",
                    "--client-cert-auth=true", f"--trusted-ca-file={pki}/etcd/ca.crt",
                    f"--cert-file={pki}/etcd/server.crt", f"--key-file={pki}/etcd/server.key",
                    "--peer-client-cert-auth=true", f"--peer-trusted-ca-file={pki}/etcd/ca.crt",
                    f"--peer-cert-file={pki}/etcd/peer.crt", f"--peer-key-file={pki}/etcd/peer.key",
                    "--snapshot-count=10000"]
        if component == "kube-apiserver":
            return [self.bin("kube-apiserver"), f"--advertise-address={LOOPBACK}", f"--bind-address={LOOPBACK}",
                    f"--secure-port={p['kube-apiserver']}", "--allow-privileged=true",
                    "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                    f"--client-ca-file={pki}/ca.crt",
                    f"--etcd-servers={self.etcd_endpoint}", f"--etcd-cafile={pki}/etcd/ca.crt",
                    f"--etcd-certfile={pki}/apiserver-etcd-client.crt",
                    f"--etcd-keyfile={pki}/apiserver-etcd-client.key",
                    f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
                    f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
                    "--kubelet-preferred-address-types=InternalIP",
                    f"--proxy-client-cert-file={pki}/front-proxy-client.crt",
                    f"--proxy-client-key-file={pki}/front-proxy-client.key",
                    "--requestheader-allowed-names=front-proxy-client",
                    f"--requestheader-client-ca-file={pki}/front-proxy-ca.crt",
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                    "--requestheader-group-headers=X-Remote-Group",
                    "--requestheader-username-headers=X-Remote-User",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={pki}/sa.pub",
                    f"--service-account-signing-key-file={pki}/sa.key",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
                    # the `kubernetes` Service cannot point at a loopback address; nothing in the lab needs it
                    "--endpoint-reconciler-type=none"]
        common = ["--authentication-kubeconfig={conf}", "--authorization-kubeconfig={conf}",
                  "--kubeconfig={conf}", f"--bind-address={LOOPBACK}",
                  f"--secure-port={p.get(component, 0)}", f"--client-ca-file={pki}/ca.crt",
                  f"--requestheader-client-ca-file={pki}/front-proxy-ca.crt",
                  # one instance per lab: skipping the election avoids waiting out a stale lease on restart
                  "--leader-elect=false",
                  # the default 20 QPS throttles start-up (a token per controller) and the 5,000-Pod labs
                  "--kube-api-qps=100", "--kube-api-burst=200"]
        if component == "kube-controller-manager":
            conf = d / "controller-manager.conf"
            return [self.bin(component), *[c.format(conf=conf) for c in common],
                    "--allocate-node-cidrs=true", f"--cluster-cidr={CLUSTER_CIDR}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}", "--cluster-name=kubernetes",
                    f"--cluster-signing-cert-file={pki}/ca.crt", f"--cluster-signing-key-file={pki}/ca.key",
                    "--controllers=*,bootstrapsigner,tokencleaner", f"--root-ca-file={pki}/ca.crt",
                    f"--service-account-private-key-file={pki}/sa.key", "--use-service-account-credentials=true",
                    # dynamic provisioning without a storage backend: StorageClasses with provisioner
                    # kubernetes.io/host-path get directories under /tmp/hostpath_pv (testing only, as upstream says)
                    "--enable-hostpath-provisioner=true"]
        if component == "kube-scheduler":
            conf = d / "scheduler.conf"
            return [self.bin(component), *[c.format(conf=conf) for c in common[:5]], *common[-3:]]
        if component == "kwok":
            return [self.bin("kwok"), f"--kubeconfig={d / 'kwok.conf'}",
                    f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                    f"--node-ip={LOOPBACK}", f"--node-port={p['kwok']}",
                    f"--server-address={LOOPBACK}:{p['kwok']}",
                    # 0 (the binary's default) means no leases; kwokctl uses 40
                    "--node-lease-duration-seconds=40"]
        raise LabError(f"unknown component {component}")

    def _start(self, component: str, log) -> None:
        state = self.component_state(component)
        if state == "running":
            log(f"[lab {self.name}] {component}: already running (pid {self.processes[component].pid})")
        else:
            if state == "crashed":
                log(f"[lab {self.name}] {component}: was crashed, restarting "
                    f"(last log line: {_last_line(self.log_file(component))})")
            self.start_component(component)
            log(f"[lab {self.name}] {component}: started pid {self.processes[component].pid}, "
                f"log {self.log_file(component)}")

    def start_component(self, component: str) -> Process:
        """Start one component now (no wait). Used by `up` and by restore runbooks."""
        self.refresh()
        cmd = self._command(component)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(component), "ab") as out:
            out.write(f"\n=== kubebook: starting {component} at {time.strftime('%F %T')}\n".encode())
            out.flush()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.dir, start_new_session=True)
        _CHILDREN[proc.pid] = proc
        start = None
        for _ in range(100):
            start = _proc_start_time(proc.pid)
            if start is not None or proc.poll() is not None:
                break
        if start is None:
            raise LabError(f"{component} exited at once ({proc.poll()}); see {self.log_file(component)}: "
                           f"{_last_line(self.log_file(component))}")
        self.processes[component] = Process(proc.pid, start, cmd[0])
        self._save()
        return self.processes[component]

    def stop_component(self, component: str, *, timeout: float = 20.0) -> bool:
        """Stop one component we started (SIGTERM, then SIGKILL after ``timeout``). False if not running."""
        self.refresh()
        proc = self.processes.pop(component, None)
        self._save()
        if proc is None or not proc.alive():
            return False
        os.kill(proc.pid, signal.SIGTERM)
        if not _wait_gone(proc, timeout):
            os.kill(proc.pid, signal.SIGKILL)
            _wait_gone(proc, 5)
        return True

    def wait_ready(self, component: str, *, deadline: float | None = None, timeout: float = 60.0) -> None:
        """Block until ``component`` answers its health check; fail at once if it exits."""
        deadline = deadline if deadline is not None else time.monotonic() + timeout
        delay = 0.05
        while True:
            if self.component_state(component) != "running":
                raise LabError(f"{component} exited during start-up; last log line: "
                               f"{_last_line(self.log_file(component))} (log: {self.log_file(component)})")
            if self.healthy(component):
                return
            if time.monotonic() > deadline:
                raise LabError(f"{component} not ready before the timeout; see {self.log_file(component)}")
            time.sleep(delay)  # no watch exists before the API does: poll the health endpoint
            delay = min(delay * 1.5, 0.5)

    # ---- probes ---------------------------------------------------------------------------
    def _tls(self, ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
        if cert and key:
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def _get(self, url: str, ctx: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        assert url.split("//")[1].startswith(LOOPBACK), "the lab talks to loopback only"
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def healthy(self, component: str) -> bool:
        """One health check: etcd /health with a client certificate, the apiserver's /readyz as
        admin, the controllers' /healthz, kwok's /healthz."""
        if component == "etcd":
            code, body = self._get(f"{self.etcd_endpoint}/health",
                                   self._tls(self.etcd_ca, self.etcd_cert, self.etcd_key))
            return code == 200 and b'"health":"true"' in body
        if component == "kube-apiserver":
            url, ctx = f"{self.server}/readyz", self._tls(self.pki.ca_crt, *self._admin_cert_files())
        elif component == "kwok":
            url, ctx = f"http://{LOOPBACK}:{self.ports['kwok']}/healthz", None
        else:  # self-signed serving certificates generated in memory: nothing to verify against
            url, ctx = f"https://{LOOPBACK}:{self.ports[component]}/healthz", self._tls(None, None, None)
        return self._get(url, ctx)[0] == 200

    def _admin_cert_files(self) -> tuple[Path, Path]:
        """The admin client cert/key as files (urllib cannot take them from memory)."""
        cert, key = self.dir / ".admin-client.crt", self.dir / ".admin-client.key"
        if not cert.exists():
            user = kcfg.load(self.kubeconfig)["users"][0]["user"]
            write_private(key, base64.b64decode(user["client-key-data"]))
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        return cert, key

    # ---- nodes ----------------------------------------------------------------------------
    def node_manifest(self, name: str) -> dict:
        """A Node as kubeadm + kubelet would register it, sized like the course's 2-CPU/4-GiB VMs."""
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", "type": "kwok"}
        taints = []
        if name == MASTER:
            labels["node-role.kubernetes.io/control-plane"] = ""
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
            taints = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
        resources = {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "50Gi"}
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels,
                         "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"taints": taints},
            "status": {
                "allocatable": resources, "capacity": resources,
                # every fake kubelet is served by kwok on loopback
                "addresses": [{"type": "InternalIP", "address": LOOPBACK}, {"type": "Hostname", "address": name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.ports["kwok"]}},
                "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "osImage": "kwok",
                             "kubeletVersion": versions.KUBERNETES, "kubeProxyVersion": versions.KUBERNETES,
                             "containerRuntimeVersion": f"kwok-{versions.KWOK}", "kernelVersion": "",
                             "machineID": "", "systemUUID": "", "bootID": ""},
            },
        }

    def _ensure_nodes(self) -> None:
        from kubernetes.client.exceptions import ApiException
        core = k8s.CoreV1Api(self.api_client())
        existing = {n.metadata.name for n in core.list_node().items}
        for name in self.nodes:
            if name in existing:
                continue
            try:
                core.create_node(self.node_manifest(name))
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def _wait_ready(self, deadline: float) -> None:
        from .waits import wait_for
        api = self.api_client()
        remaining = max(1.0, deadline - time.monotonic())
        wait_for(api, "nodes", lambda nodes: all(_node_ready(nodes.get(n)) for n in self.nodes),
                 timeout=remaining, what=f"nodes {', '.join(self.nodes)} Ready with a podCIDR")
        # Pods cannot be created before the ServiceAccount controller made `default/default`.
        wait_for(api, "serviceaccounts", lambda sas: "default" in sas, namespace="default",
                 timeout=max(1.0, deadline - time.monotonic()), what="ServiceAccount default/default")

    # ---- down -----------------------------------------------------------------------------
    def down(self, *, keep_data: bool = False,
             log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[str]:
        """Stop every process this lab started (reverse order); remove the lab unless ``keep_data``."""
        stopped = []
        with self._locked():
            for c in reversed(COMPONENTS):
                if self.stop_component(c):
                    stopped.append(c)
                    log(f"[lab {self.name}] stopped {c}")
            if not keep_data:
                shutil.rmtree(self.dir, ignore_errors=True)
                log(f"[lab {self.name}] removed {self.dir}")
        return stopped


def _wait_gone(proc: Process, timeout: float) -> bool:
    child = _CHILDREN.pop(proc.pid, None)
    if child is not None:  # our own child: wait() also reaps it
        try:
            child.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            _CHILDREN[proc.pid] = child
            return False
    end = time.monotonic() + timeout
    while proc.alive():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)  # not our child (started by an earlier `lab up`): no wait() possible
    return True


def _node_order(name: str) -> tuple[int, int]:
    return (0, 0) if name == MASTER else (1, int(name.removeprefix("k8s-slave") or 0))


def _node_ready(node) -> bool:
    """Ready, and given its podCIDR by kube-controller-manager (kwok takes Pod IPs from it)."""
    if node is None or not (node.get("spec") or {}).get("podCIDR"):
        return False
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = [l for l in f.read().decode(errors="replace").splitlines() if l.strip()]
        return lines[-1] if lines else ""
    except FileNotFoundError:
        return ""


def get(name: str = "kubebook") -> Lab:
    """The lab called ``name`` (its saved state if it exists, else a new one)."""
    if not name.replace("-", "").isalnum():
        raise LabError(f"lab name {name!r}: use letters, digits and dashes")
    return Lab(name=name, dir=labs_root() / name).refresh()


@contextlib.contextmanager
def running(name: str = "kubebook", *, nodes: int = 3, timeout: float = 180.0,
            keep: bool | None = None, log: Callable[[str], None] = lambda m: None) -> Iterator[Lab]:
    """A running lab for the ``with`` block; stops it afterwards if this call started it.

    ``keep=True`` leaves it running; ``keep=False`` always removes it.
    """
    lab = get(name)
    was_running = lab.is_running()
    remove = keep is False or (keep is None and not was_running)
    try:
        lab.up(nodes=nodes, timeout=timeout, log=log)
    except BaseException:
        if remove:  # a failed start must not leave the processes it started behind
            lab.down(log=log)
        raise
    try:
        yield lab
    finally:
        if remove:
            lab.down(log=log)
