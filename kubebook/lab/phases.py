"""`lab up` as an ordered list of named phases, in kubeadm's style.

Each phase is idempotent (what exists is kept, what runs is left running), prints its name as it
starts, and records every process it starts before it waits on anything, so an interrupted `up`
leaves only recorded processes and the next `up` carries on from where it stopped.

    [up] certs: CAs and certificates in kubeadm's layout
    [up] etcd: start etcd
    [up] etcd: started pid 4242, log .../logs/etcd.log
    ...
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from .. import binaries, kubeconfig as kcfg
from ..errors import LabError
from . import baseline, memory, nodes
from .components import COMPONENTS, MASTER, NAMES
from ..ports import free_loopback_port, port_free
from .probes import PortTaken

if TYPE_CHECKING:
    from .lab import Lab

# kubeconfig file per component identity, as kubeadm names them in /etc/kubernetes
IDENTITIES = {
    "admin.conf": ("kubernetes-admin", ("system:masters",)),
    "controller-manager.conf": ("system:kube-controller-manager", ()),
    "scheduler.conf": ("system:kube-scheduler", ()),
    # kwok plays every kubelet at once, so the Node authorizer's one-node rules cannot fit it.
    "kwok.conf": ("kubebook:kwok-controller", ("system:masters",)),
}


@dataclass
class Run:
    """One `up`: the lab, its deadline, where to log, and what this run has started."""

    lab: "Lab"
    deadline: float
    log: Callable[[str], None]
    started: set[str] = field(default_factory=set)
    phase: str = ""

    def say(self, text: str) -> None:
        self.log(f"[up] {self.phase}: {text}")


@dataclass(frozen=True)
class Phase:
    name: str
    help: str
    run: Callable[[Run], None]


def _binaries(run: Run) -> None:
    located = binaries.ensure(log=run.log)
    run.lab.binaries = {k: str(v) for k, v in located.items()}


def _certs(run: Run) -> None:
    run.lab.pki.ensure(node_name=MASTER)


def _ports(run: Run) -> None:
    """Choose a free loopback port for each listener that has none. While any component runs, the
    recorded ports stay (the others were configured with them); when none runs, a recorded port
    another program has taken meanwhile is replaced."""
    lab = run.lab
    anything_running = any(lab.component_state(c) == "running" for c in NAMES)
    for component in COMPONENTS:
        for name in component.ports:
            if name in lab.ports and (anything_running or port_free(lab.ports[name])):
                continue
            lab.ports[name] = free_loopback_port(avoid=lab.ports.values())
    lab.save()


def _kubeconfigs(run: Run) -> None:
    lab = run.lab
    ca_pem = lab.pki.ca_crt.read_bytes()
    for filename, (cn, orgs) in IDENTITIES.items():
        path = lab.dir / filename
        if path.is_file():
            config = kcfg.load(path)
            if config["clusters"][0]["cluster"]["server"] != lab.server:
                config["clusters"][0]["cluster"]["server"] = lab.server  # a port changed
                kcfg.write(path, config)
            continue
        pair = lab.pki.client(cn, orgs)
        admin = filename == "admin.conf"
        kcfg.write(path, kcfg.build(server=lab.server, ca_pem=ca_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem,
                                    cluster=lab.name, user="kubernetes-admin" if admin else cn,
                                    context=lab.context if admin else f"{cn}@{lab.name}"))


def _start(*names: str) -> Callable[[Run], None]:
    """Start the components that are not running, without waiting: each retries its upstream
    (apiserver -> etcd, the rest -> apiserver) until it answers, so their start-ups overlap."""
    def phase(run: Run) -> None:
        lab = run.lab
        for name in names:
            state = lab.component_state(name)
            if state == "running":
                run.say(f"{name} already running (pid {lab.processes[name].pid})")
                continue
            if state == "crashed":
                run.say(f"{name} had crashed, restarting it (last log line: {lab.last_log_line(name)})")
            record = lab.start_component(name)
            run.started.add(name)
            run.say(f"{name} started pid {record.pid}, log {lab.log_file(name)}")
    return phase


def _wait_control_plane(run: Run) -> None:
    for name in ("etcd", "kube-apiserver"):
        run.lab.wait_ready(name, deadline=run.deadline)


def _nodes(run: Run) -> None:
    created = nodes.register(run.lab)
    if created:
        run.say(f"registered {', '.join(created)}")


def _addons(run: Run) -> None:
    """Add-ons (metrics-server for the HPA runbooks) stop with the apiserver they serve; an
    APIService left registered for one would be Unavailable, and an unavailable aggregated API
    blocks discovery and namespace deletion. Runbooks register them again when they need them."""
    if "kube-apiserver" not in run.started:
        return
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    registrations = client.ApiregistrationV1Api(run.lab.api_client())
    for service in registrations.list_api_service(label_selector="kubebook.io/addon").items:
        try:
            registrations.delete_api_service(service.metadata.name)
        except ApiException as exc:
            if exc.status != 404:
                raise
        run.say(f"removed the stale APIService {service.metadata.name}")


def _ready(run: Run) -> None:
    for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
        run.lab.wait_ready(name, deadline=run.deadline)
    nodes.wait_ready(run.lab, run.deadline)


def _baseline(run: Run) -> None:
    if baseline.current(run.lab):
        return
    taken = baseline.take(run.lab)
    run.say(f"etcd snapshot at revision {taken['revision']} ({taken['keys']} keys) for `lab reset`")


def _trim(run: Run) -> None:
    """A lab sits idle between a class's steps; the code its processes ran only to start need not
    stay resident (see memory.release_startup_pages). Re-running it is harmless."""
    freed = []
    for name in NAMES:
        record = run.lab.processes.get(name)
        if record is None:
            continue
        before = memory.usage(record).get("file_mib", 0)
        try:
            memory.release_startup_pages(record)
        except OSError as exc:
            run.say(f"skipped ({exc.strerror or exc}): the lab works, it only keeps its start-up pages")
            return
        freed.append(before - memory.usage(record).get("file_mib", before))
    run.say(f"{sum(freed):.0f} MiB of start-up code pages released")


PHASES: tuple[Phase, ...] = (
    Phase("binaries", "find (or build) the upstream binaries", _binaries),
    Phase("certs", "CAs and certificates in kubeadm's layout", _certs),
    Phase("ports", "a free loopback port for each listener", _ports),
    Phase("kubeconfigs", "admin.conf and one kubeconfig per component identity", _kubeconfigs),
    Phase("etcd", "start etcd", _start("etcd")),
    Phase("apiserver", "start kube-apiserver", _start("kube-apiserver")),
    Phase("controllers", "start kube-controller-manager and kube-scheduler",
          _start("kube-controller-manager", "kube-scheduler")),
    Phase("kwok", "start kwok, the nodes' kubelets", _start("kwok")),
    Phase("wait-control-plane", "etcd healthy, kube-apiserver ready", _wait_control_plane),
    Phase("nodes", "register the Node objects", _nodes),
    Phase("addons", "drop add-on APIServices a restarted apiserver cannot serve", _addons),
    Phase("ready", "controllers healthy, every node Ready, ServiceAccount default", _ready),
    Phase("baseline", "etcd snapshot of the fresh lab, for `lab reset`", _baseline),
    Phase("trim", "page out the code each process ran only to start", _trim),
)
PHASE_NAMES = tuple(p.name for p in PHASES)


def select(names: Iterable[str] | None) -> list[Phase]:
    if names is None:
        return list(PHASES)
    names = list(names)
    unknown = [n for n in names if n not in PHASE_NAMES]
    if unknown:
        raise LabError(f"unknown phase {', '.join(unknown)}; phases: {', '.join(PHASE_NAMES)}")
    return [p for p in PHASES if p.name in names]


def run(run: Run, phases: list[Phase]) -> None:
    """Run ``phases`` in order; a bind failure re-runs them from `ports` on once, with new ports."""
    try:
        _run_each(run, phases)
    except PortTaken as exc:
        run.log(f"[up] {exc}; choosing new ports and starting again")
        for component in reversed(NAMES):
            run.lab.stop_component(component)
        _run_each(run, [p for p in phases if PHASE_NAMES.index(p.name) >= PHASE_NAMES.index("ports")])


def _run_each(run: Run, phases: list[Phase]) -> None:
    for phase in phases:
        run.phase = phase.name
        run.log(f"[up] {phase.name}: {phase.help}")
        try:
            phase.run(run)
        except LabError:
            raise
        except Exception as exc:  # name the phase that failed, as kubeadm does
            raise LabError(f"lab {run.lab.name}: phase {phase.name} failed: {exc}") from exc


def deadline(timeout: float) -> float:
    return time.monotonic() + timeout
