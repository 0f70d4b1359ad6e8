"""The resource metrics pipeline: metrics-server behind the API aggregation layer, and its readers.

    addon = ensure_metrics(plan, target)   # a step on a kubebook lab: start the add-on; elsewhere only check
    apiservice(api)                         # v1beta1.metrics.k8s.io: which Service, Available or why not
    top_nodes(api); top_pods(api, "kubebook-metrics")   # kubectl top nodes / pods, from metrics.k8s.io
    blocked(api)                            # why no metrics can be read now (the waits' diagnosis), or None
    stop_if_started(plan, addon, target)    # clean-up: stop the add-on if this run started it

    start_metrics_server(lab); stop_metrics_server(lab)   # the add-on's own process handling

How the lab add-on is wired (a real cluster runs metrics-server as a Deployment instead):

* kube-apiserver proxies ``/apis/metrics.k8s.io/v1beta1`` to the Service the APIService names. The
  lab has no Pod network and no kube-proxy, so a ClusterIP would lead nowhere, and Endpoints may not
  hold loopback addresses. An ``ExternalName`` Service does work: the aggregator dials
  ``<externalName>:<port>`` directly — ``localhost`` here, as ``kwokctl --enable-metrics-server`` does.
* metrics-server listens on 127.0.0.1 only, authenticates to the API with a client certificate
  signed by the lab CA (user ``kubebook:metrics-server``) and gets the RBAC of upstream's
  components.yaml (read nodes/pods/nodes/metrics, delegate authn/authz, read the front-proxy CA).
* It scrapes ``http://<node InternalIP>:<port><path>``; every lab node is 127.0.0.1, so each node
  gets the annotation ``metrics.k8s.io/resource-metrics-path: /metrics/nodes/<node>/metrics/resource``
  (metrics-server ≥ 0.7 honours it, kwokctl sets the same) and :mod:`.kubelet_sim` answers per node.
  The lab's kwok is started without a config or ``--enable-crds``, so it cannot serve kwok's
  ``Metric`` objects itself (see the module docstring of :mod:`.kubelet_sim`).
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from .. import binaries, process, safety
from .. import kubeconfig as kcfg
from ..connect import raw_request
from ..errors import KubebookError
from ..objects import Ref
from ..plan import Plan
from ..waits import WaitBlocked, WaitTimeout
from . import kubelet_sim

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
APISERVICE = f"{VERSION}.{GROUP}"
SERVICE = ("kube-system", "metrics-server")
USER = "kubebook:metrics-server"
PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
LABELS = {"app.kubernetes.io/managed-by": "kubebook", "kubebook.io/addon": "metrics-server"}
METRIC_RESOLUTION = "10s"  # metrics-server's default is 60s
KUBELET_REQUEST_TIMEOUT = "5s"  # must stay below METRIC_RESOLUTION


class MetricsUnavailable(KubebookError):
    """metrics.k8s.io is not served (no APIService, or it is not Available)."""


# ---- the lab add-on ---------------------------------------------------------------------------

def addon_dir(lab) -> Path:
    return Path(lab.dir) / "addons" / "metrics-server"


def _state_file(lab) -> Path:
    return addon_dir(lab) / "addon.json"


def addon_state(lab) -> dict | None:
    """PID, start time and ports of the running add-on, or None (a stale record is ignored)."""
    try:
        state = json.loads(_state_file(lab).read_text())
        recorded = process.Record.from_dict(state)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if recorded.alive() else None


def _rbac_objects() -> list[tuple[str, dict]]:
    meta = lambda name, **kw: {"name": name, "labels": dict(LABELS), **kw}  # noqa: E731
    return [
        ("cluster_role", {"metadata": meta(USER), "rules": [
            {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]}),
        # what upstream's components.yaml adds to view/edit/admin: reading metrics needs this verb set
        ("cluster_role", {"metadata": meta("system:aggregated-metrics-reader", labels={
            **LABELS, "rbac.authorization.k8s.io/aggregate-to-view": "true",
            "rbac.authorization.k8s.io/aggregate-to-edit": "true",
            "rbac.authorization.k8s.io/aggregate-to-admin": "true"}), "rules": [
            {"apiGroups": [GROUP], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]}),
        ("cluster_role_binding", {"metadata": meta(USER), "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]}),
        ("cluster_role_binding", {"metadata": meta(f"{USER}:auth-delegator"), "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]}),
        ("role_binding", {"metadata": meta(f"{USER}:auth-reader", namespace="kube-system"), "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "extension-apiserver-authentication-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]}),
    ]


def _apply(api: client.ApiClient, kind: str, body: dict) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    name, namespace = body["metadata"]["name"], body["metadata"].get("namespace")
    create = getattr(rbac, f"create_namespaced_{kind}" if namespace else f"create_{kind}")
    replace = getattr(rbac, f"replace_namespaced_{kind}" if namespace else f"replace_{kind}")
    try:
        create(namespace, body) if namespace else create(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        replace(name, namespace, body) if namespace else replace(name, body)


def _registration(port: int) -> tuple[dict, dict]:
    service = {"metadata": {"name": SERVICE[1], "namespace": SERVICE[0], "labels": dict(LABELS)},
               "spec": {"type": "ExternalName", "externalName": "localhost",
                        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}}
    apiservice = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                  "metadata": {"name": APISERVICE, "labels": dict(LABELS)},
                  "spec": {"group": GROUP, "version": VERSION, "groupPriorityMinimum": 100, "versionPriority": 100,
                           # metrics-server's serving certificate is self-signed, as in upstream's manifest
                           "insecureSkipTLSVerify": True,
                           "service": {"namespace": SERVICE[0], "name": SERVICE[1], "port": port}}}
    return service, apiservice


def _register(api: client.ApiClient, port: int) -> None:
    core, reg = client.CoreV1Api(api), client.ApiregistrationV1Api(api)
    service, apiservice = _registration(port)
    try:
        current = core.read_namespaced_service(SERVICE[1], SERVICE[0])
        if current.spec.type != "ExternalName" or (current.metadata.labels or {}).get("kubebook.io/addon") != "metrics-server":
            raise KubebookError(f"Service {SERVICE[0]}/{SERVICE[1]} exists and is not the lab add-on's; not touching it")
        core.replace_namespaced_service(SERVICE[1], SERVICE[0], {
            **service, "metadata": {**service["metadata"], "resourceVersion": current.metadata.resource_version}})
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_service(SERVICE[0], service)
    try:
        current = reg.read_api_service(APISERVICE)
        reg.replace_api_service(APISERVICE, {**apiservice, "metadata": {
            **apiservice["metadata"], "resourceVersion": current.metadata.resource_version}})
    except ApiException as exc:
        if exc.status != 404:
            raise
        reg.create_api_service(apiservice)


def _annotate_nodes(api: client.ApiClient, *, remove: bool = False) -> None:
    core = client.CoreV1Api(api)
    for node in core.list_node().items:
        value = None if remove else f"/metrics/nodes/{node.metadata.name}/metrics/resource"
        if (node.metadata.annotations or {}).get(PATH_ANNOTATION) != value:
            core.patch_node(node.metadata.name, {"metadata": {"annotations": {PATH_ANNOTATION: value}}})


def start_metrics_server(lab, *, timeout: float = 120, log=print) -> dict:
    """Run metrics-server next to ``lab`` and register it; idempotent. Returns the add-on's state.

    Waits until the APIService is Available and every node has a first sample (metrics-server
    needs two scrapes, ``METRIC_RESOLUTION`` apart, before it can report a CPU rate).
    """
    api = lab.api_client()
    state = addon_state(lab)
    if state:
        log(f"[metrics-server] already running (pid {state['pid']}, 127.0.0.1:{state['port']})")
    else:
        state = _spawn(lab, log)
    _annotate_nodes(api)
    _register(api, state["port"])
    try:
        wait_available(api, timeout=timeout, gone=lambda: _addon_exited(state))
    except WaitBlocked as exc:
        # an APIService with nothing behind it fails discovery, which stalls every namespace deletion
        stop_metrics_server(lab, log=log)
        raise WaitBlocked(f"{exc}; its APIService, Service, RBAC and node annotations were removed again") from None
    wait_node_metrics(api, timeout=timeout)
    log(f"[metrics-server] {APISERVICE} Available; node metrics served")
    return state


def _addon_exited(state: dict) -> str | None:
    """Why the add-on process is gone, from the last line of its log; None while it runs."""
    if process.Record(state["pid"], state["start_time"]).alive():
        return None
    try:
        lines = [l.strip() for l in Path(state["log"]).read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        lines = []
    said = next((l for l in reversed(lines) if re.match(r"(Error:|[EF]\d{4} )", l)), "")  # its own or klog's
    return (f"the metrics add-on (pid {state['pid']}) exited" + (f": {safety.mask_text(said)[:300]}" if said else "")
            + f"; its log: {state['log']}")


def _spawn(lab, log) -> dict:
    from ..ports import free_loopback_port  # outside the ephemeral range, not another lab's
    api = lab.api_client()
    d = addon_dir(lab)
    d.mkdir(parents=True, exist_ok=True)
    pair = lab.pki.client(USER)
    conf = d / "metrics-server.conf"
    kcfg.write(conf, kcfg.build(server=lab.server, ca_pem=lab.pki.ca_crt.read_bytes(), cert_pem=pair.cert_pem,
                                key_pem=pair.key_pem, cluster=lab.name, user=USER, context=f"{USER}@{lab.name}"))
    os.chmod(conf, 0o600)
    for kind, body in _rbac_objects():
        _apply(api, kind, body)
    taken = set(lab.ports.values())
    sim_port = free_loopback_port(taken)
    port = free_loopback_port(taken | {sim_port})
    apiserver = lab.processes["kube-apiserver"]
    flags = ["--bind-address=127.0.0.1", f"--secure-port={port}", f"--cert-dir={d / 'serving'}",
             f"--kubeconfig={conf}", f"--authentication-kubeconfig={conf}", f"--authorization-kubeconfig={conf}",
             "--kubelet-preferred-address-types=InternalIP", f"--kubelet-port={sim_port}",
             # the simulated endpoint speaks plain HTTP on loopback; a real kubelet needs TLS
             # (upstream: --kubelet-insecure-tls when its serving certificate is self-signed)
             "--deprecated-kubelet-completely-insecure", f"--metric-resolution={METRIC_RESOLUTION}",
             # metrics-server refuses a resolution not above this timeout (default 10s); the endpoint is on loopback
             f"--kubelet-request-timeout={KUBELET_REQUEST_TIMEOUT}"]
    command = [sys.executable, "-m", "kubebook.autoscaling.addon", f"--kubeconfig={conf}",
               f"--sim-port={sim_port}", f"--metrics-server={binaries.ensure_tool('metrics-server')}",
               f"--watch-pid={apiserver.pid}", f"--watch-start={apiserver.start_time}", "--", *flags]
    state = {"port": port, "sim_port": sim_port, "log": str(d / "addon.log")}

    def remember(record: process.Record) -> None:  # where `lab down` and `lab reset` find it
        state.update(pid=record.pid, start_time=record.start_time)
        _state_file(lab).write_text(json.dumps(state))
    process.start(command, log=d / "addon.log", cwd=d, on_record=remember, banner="starting the metrics add-on")
    log(f"[metrics-server] started pid {state['pid']}: metrics-server on 127.0.0.1:{port}, "
        f"simulated kubelet endpoint on 127.0.0.1:{sim_port}, log {d / 'addon.log'}")
    return state


def stop_metrics_server(lab, *, timeout: float = 30, log=print) -> str:
    """Unregister the APIService (and what start created), then stop exactly the recorded PID."""
    api = lab.api_client()
    reg, core, rbac = client.ApiregistrationV1Api(api), client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    _ignore_404(lambda: reg.delete_api_service(APISERVICE)
                if (reg.read_api_service(APISERVICE).metadata.labels or {}).get("kubebook.io/addon") else None)
    _ignore_404(lambda: core.delete_namespaced_service(SERVICE[1], SERVICE[0])
                if (core.read_namespaced_service(SERVICE[1], SERVICE[0]).metadata.labels or {}).get("kubebook.io/addon")
                else None)
    _annotate_nodes(api, remove=True)
    for kind, body in _rbac_objects():
        name, namespace = body["metadata"]["name"], body["metadata"].get("namespace")
        delete = getattr(rbac, f"delete_namespaced_{kind}" if namespace else f"delete_{kind}")
        _ignore_404(lambda: delete(name, namespace) if namespace else delete(name))
    state = addon_state(lab)
    _state_file(lab).unlink(missing_ok=True)
    if not state:
        log("[metrics-server] not running; registration removed")
        return "not running"
    process.stop(process.Record.from_dict(state), timeout=timeout)
    log(f"[metrics-server] stopped pid {state['pid']}; APIService {APISERVICE} removed")
    return "stopped"


def _ignore_404(fn) -> None:
    try:
        fn()
    except ApiException as exc:
        if exc.status != 404:
            raise


# ---- what a runbook checks on any cluster -----------------------------------------------------

def apiservice(api: client.ApiClient) -> pd.DataFrame:
    """``kubectl get apiservice v1beta1.metrics.k8s.io``: backing Service, Available and why."""
    try:
        a = api.sanitize_for_serialization(client.ApiregistrationV1Api(api).read_api_service(APISERVICE))
    except ApiException as exc:
        if exc.status != 404:
            raise
        return pd.DataFrame([{"name": APISERVICE, "service": "", "available": "not registered",
                              "reason": "", "message": "no metrics-server (or other provider) installed"}])
    svc = a["spec"].get("service") or {}
    cond = next((c for c in (a.get("status") or {}).get("conditions") or [] if c["type"] == "Available"), {})
    return pd.DataFrame([{"name": APISERVICE,
                          "service": f"{svc.get('namespace')}/{svc.get('name')}:{svc.get('port')}" if svc else "Local",
                          "available": cond.get("status", "Unknown"), "reason": cond.get("reason", ""),
                          "message": cond.get("message", "")}])


def is_available(api: client.ApiClient) -> bool:
    return apiservice(api).loc[0, "available"] == "True"


def wait_available(api: client.ApiClient, *, timeout: float = 120, gone=lambda: None) -> None:
    """Watch the APIService until its Available condition is True. ``gone()`` is asked every few
    seconds: a reason it returns (the server behind the APIService has exited) ends the wait at once."""
    reg = client.ApiregistrationV1Api(api)
    deadline = time.monotonic() + timeout
    selector = f"metadata.name={APISERVICE}"
    while time.monotonic() < deadline:
        reason = gone()
        if reason:
            raise WaitBlocked(f"APIService {APISERVICE} cannot become Available: {reason}")
        listing = reg.list_api_service(field_selector=selector)
        if any(_available(api.sanitize_for_serialization(a)) for a in listing.items):
            return
        w = watch.Watch()
        try:
            for event in w.stream(reg.list_api_service, field_selector=selector,
                                  resource_version=listing.metadata.resource_version,
                                  timeout_seconds=max(1, min(3, int(deadline - time.monotonic())))):
                if _available(api.sanitize_for_serialization(event["object"])):
                    return
        except ApiException as exc:
            if exc.status != 410:
                raise
        finally:
            w.stop()
    raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for APIService {APISERVICE} to be Available: "
                      f"{apiservice(api).loc[0, 'message']}")


def _available(a: dict) -> bool:
    return any(c["type"] == "Available" and c["status"] == "True"
               for c in (a.get("status") or {}).get("conditions") or [])


def _list(api: client.ApiClient, plural: str, namespace: str | None = None) -> list[dict]:
    custom = client.CustomObjectsApi(api)
    try:
        if namespace:
            return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
        return custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]
    except ApiException as exc:
        if exc.status in (404, 503):
            raise MetricsUnavailable(f"{GROUP}/{VERSION} {plural}: {exc.status} {exc.reason} — is metrics-server "
                                     "installed and its APIService Available?") from None
        raise


def wait_node_metrics(api: client.ApiClient, *, timeout: float = 120) -> None:
    """Until every node has a sample. metrics-server has no watch; this polls at the scrape interval's pace."""
    deadline = time.monotonic() + timeout
    nodes = {n.metadata.name for n in client.CoreV1Api(api).list_node().items}
    while True:
        try:
            if nodes <= {m["metadata"]["name"] for m in _list(api, "nodes")}:
                return
        except MetricsUnavailable:
            pass
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for metrics of nodes {sorted(nodes)}")
        time.sleep(2)  # metrics-server offers no watch on metrics.k8s.io


def blocked(api: client.ApiClient) -> str | None:
    """Why nothing can read ``metrics.k8s.io`` now (the APIService is missing or not Available), or None.

    The ``diagnose=`` of every wait that needs resource metrics (the HPA's, ``kubectl top``'s): with
    no metrics API the HPA controller reports ``FailedGetResourceMetric`` forever, so waiting helps nothing.
    """
    try:
        a = api.sanitize_for_serialization(client.ApiregistrationV1Api(api).read_api_service(APISERVICE))
    except ApiException as exc:
        if exc.status != 404:
            raise
        a = None
    return apiservice_blocked(a)


def apiservice_blocked(a: dict | None) -> str | None:
    """:func:`blocked` for the APIService object as read (None: it does not exist)."""
    if a is None:
        return (f"the cluster serves no metrics API: APIService {APISERVICE} does not exist (no metrics-server); "
                "install metrics-server (upstream components.yaml) — on a kubebook lab the runbook starts its add-on")
    cond = next((c for c in (a.get("status") or {}).get("conditions") or [] if c.get("type") == "Available"), None)
    if cond is None or cond.get("status") == "True":
        return None
    svc = (a.get("spec") or {}).get("service") or {}
    return (f"the metrics API is unavailable: APIService {APISERVICE} is not Available ({cond.get('reason')}: "
            f"{cond.get('message')}); check metrics-server behind Service {svc.get('namespace')}/{svc.get('name')}")


def _expected_cpu(pod) -> int | None:
    """The simulated CPU a Pod carries (kwok's usage annotation), in millicores; None without one."""
    value = (pod.metadata.annotations or {}).get(kubelet_sim.CPU_ANNOTATION)
    try:
        return _millicores(value) if value else None
    except ValueError:
        return None


def pod_metrics_ready(api: client.ApiClient, namespace: str, selector: str, *, timeout: float = 120,
                      poll: float = 2.0) -> dict[str, int]:
    """Until every Running Pod matching ``selector`` has metrics, and a Pod given simulated load
    (:func:`kubebook.autoscaling.hpa.simulate_load`) reports about that much CPU. Returns CPU (m) per Pod.

    metrics.k8s.io has no watch, so this polls: a new Pod needs two scrapes before it has a rate.
    Without a metrics API it stops at once with :class:`WaitBlocked` saying so.
    """
    deadline = time.monotonic() + timeout
    got: dict[str, int] = {}
    while True:
        reason = blocked(api)
        if reason:
            raise WaitBlocked(f"metrics of Pods {selector} in {namespace}: {reason}")
        pods = {p.metadata.name: p for p in client.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=selector).items if p.status.phase == "Running"}
        try:
            got = {m["metadata"]["name"]: sum(_millicores(c["usage"]["cpu"]) for c in m["containers"])
                   for m in _list(api, "pods", namespace) if m["metadata"]["name"] in pods}
        except MetricsUnavailable:
            got = {}
        # a rate over a window: a simulated 300m reads as a little less right after a change
        loaded = all(got.get(name, 0) >= 0.9 * want for name, p in pods.items()
                     if (want := _expected_cpu(p)) is not None)
        if pods and set(got) == set(pods) and loaded:
            return got
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for metrics of Pods {sorted(pods)} in "
                              f"{namespace}; have {got}")
        time.sleep(poll)


def wait_pod_metrics(plan: Plan, namespace: str, selector: str, *, timeout: float = 120) -> str | None:
    """:func:`pod_metrics_ready` as a wait step of ``plan`` (nothing to wait for in a dry run)."""
    def act() -> str:
        got = pod_metrics_ready(plan.api, namespace, selector, timeout=timeout)
        return ", ".join(f"{name} {cpu}m" for name, cpu in sorted(got.items()))

    return plan.wait(f"pod-metrics-{namespace}", f"metrics-server reports every Pod {selector} in {namespace} "
                     "(two scrapes per new Pod; simulated load visible)", act)


def _millicores(q: str) -> int:
    return int(parse_quantity(q) * 1000)


def _mib(q: str) -> int:
    return int(parse_quantity(q) / (1024 * 1024))


TOP_NODES_COLUMNS = ["name", "cpu (m)", "cpu %", "memory (Mi)", "memory %", "window", "timestamp"]


def top_nodes(api: client.ApiClient) -> pd.DataFrame:
    """``kubectl top nodes``: usage, and percent of the node's allocatable (empty, with the reason
    printed, when the metrics API is not served)."""
    try:
        listed = _list(api, "nodes")
    except MetricsUnavailable as exc:
        print(f"kubectl top nodes: {exc}")
        return pd.DataFrame(columns=TOP_NODES_COLUMNS)
    allocatable = {n.metadata.name: n.status.allocatable or {} for n in client.CoreV1Api(api).list_node().items}
    rows = []
    for m in sorted(listed, key=lambda m: m["metadata"]["name"]):
        name, usage = m["metadata"]["name"], m["usage"]
        alloc = allocatable.get(name, {})
        cpu, mem = _millicores(usage["cpu"]), _mib(usage["memory"])
        rows.append({"name": name, "cpu (m)": cpu,
                     "cpu %": round(100 * cpu / _millicores(alloc["cpu"])) if alloc.get("cpu") else None,
                     "memory (Mi)": mem,
                     "memory %": round(100 * mem / _mib(alloc["memory"])) if alloc.get("memory") else None,
                     "window": m.get("window"), "timestamp": m.get("timestamp")})
    return pd.DataFrame(rows, columns=TOP_NODES_COLUMNS)


def top_pods(api: client.ApiClient | None, namespace: str, *, containers: bool = False) -> pd.DataFrame:
    """``kubectl top pods`` (``--containers``): CPU in millicores and memory in MiB from metrics.k8s.io.

    Empty (the reason printed) when the metrics API is not served, or ``api`` is None (a dry run's
    token that was never requested)."""
    columns = ["pod", "container", "cpu (m)", "memory (Mi)"] if containers else \
        ["pod", "cpu (m)", "memory (Mi)", "window", "timestamp"]
    if api is None:
        return pd.DataFrame(columns=columns)
    try:
        listed = _list(api, "pods", namespace)
    except MetricsUnavailable as exc:
        print(f"kubectl top pods -n {namespace}: {exc}")
        return pd.DataFrame(columns=columns)
    rows = []
    for m in sorted(listed, key=lambda m: m["metadata"]["name"]):
        if containers:
            rows += [{"pod": m["metadata"]["name"], "container": c["name"], "cpu (m)": _millicores(c["usage"]["cpu"]),
                      "memory (Mi)": _mib(c["usage"]["memory"])} for c in m["containers"]]
        else:
            rows.append({"pod": m["metadata"]["name"],
                         "cpu (m)": sum(_millicores(c["usage"]["cpu"]) for c in m["containers"]),
                         "memory (Mi)": sum(_mib(c["usage"]["memory"]) for c in m["containers"]),
                         "window": m.get("window"), "timestamp": m.get("timestamp")})
    return pd.DataFrame(rows, columns=columns)


# ---- the metrics API for a runbook: on a lab started as an add-on, elsewhere only checked -----------

APISERVICE_REF = Ref("APIService", APISERVICE)


def addon_scope(target) -> list[str]:
    """What a runbook's plan must name besides its namespace to start the lab's add-on: the
    APIService it registers (on a kubebook lab; elsewhere nothing is installed, so nothing)."""
    return [APISERVICE_REF.scope] if getattr(target, "lab", None) is not None else []


@dataclass
class Addon:
    """What :func:`ensure_metrics` planned and did: ``started`` when this run started the add-on."""

    planned: bool = False
    started: bool = False


def ensure_metrics(plan: Plan, target, *, timeout: float = 120, log=print) -> Addon:
    """Make ``metrics.k8s.io`` usable; the returned :class:`Addon` tells :func:`stop_if_started` what to undo.

    Served already: nothing to do. On a kubebook lab (``target.lab``) the add-on (metrics-server
    on 127.0.0.1 and the simulated kubelet endpoint) is started as a plan step that registers the
    APIService; besides it, the add-on makes only its own objects (its RBAC, the kube-system
    Service ``metrics-server``, a node annotation naming the scrape path), all removed when it
    stops. On any other cluster nothing is installed: the APIService's state is reported, and the
    waits that need metrics stop at once saying so.
    """
    addon = Addon()
    reason = blocked(plan.api)
    if reason is None:
        log(f"{APISERVICE} is Available: metrics are served")
        return addon
    if getattr(target, "lab", None) is None:
        log(f"{reason}; the steps that need metrics will stop with this reason")
        return addon

    def act() -> str:
        lab = target.require_lab()
        addon.started = addon_state(lab) is None
        state = start_metrics_server(lab, timeout=timeout, log=log)
        return f"pid {state['pid']}, 127.0.0.1:{state['port']}"

    addon.planned = True
    plan.step("metrics-server", f"start metrics-server next to lab {target.lab.name} (127.0.0.1 only) with its "
              f"RBAC, Service {SERVICE[0]}/{SERVICE[1]} and node scrape-path annotations, and register APIService "
              f"{APISERVICE}; wait until it is Available and every node has a sample", act,
              command="kubectl apply -f https://github.com/kubernetes-sigs/metrics-server/releases/latest/download/"
                      "components.yaml   # a real cluster's equivalent", touches=[APISERVICE_REF])
    return addon


def stop_if_started(plan: Plan, addon: Addon, target, *, when: bool = True, log=print) -> str | None:
    """Stop the lab add-on if :func:`ensure_metrics` started it in this run, so the lab is left as found."""
    if not (addon.planned and when):
        return None

    def act() -> str:
        if not addon.started:
            return "not started by this run: left running"
        return stop_metrics_server(target.require_lab(), log=log)

    return plan.step("metrics-server-stop", f"unregister APIService {APISERVICE} and stop the lab's metrics-server "
                     "(only if this run started it)", act, touches=[APISERVICE_REF])


def kubelet_resource_metrics(target, node: str) -> pd.DataFrame:
    """The kubelet's ``/metrics/resource`` for ``node`` as a table (metric, labels, value).

    On a real cluster it is read through the API server's node proxy
    (``/api/v1/nodes/<node>/proxy/metrics/resource``, which needs ``nodes/proxy``); on the lab from
    the simulated endpoint metrics-server scrapes (kwok's node port serves no resource metrics),
    empty with a note while the lab's add-on is not running (a dry run).
    """
    lab = getattr(target, "lab", None)
    if lab is not None:
        state = addon_state(lab)
        if not state:
            print(f"the metrics add-on of lab {lab.name} is not running: no simulated kubelet endpoint to read")
            return pd.DataFrame(columns=["metric", "labels", "value"])
        url = f"http://127.0.0.1:{state['sim_port']}/metrics/nodes/{node}/metrics/resource"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
    else:
        status, data = raw_request(target.api, "GET", f"/api/v1/nodes/{node}/proxy/metrics/resource")
        if status != 200:
            raise KubebookError(f"GET /api/v1/nodes/{node}/proxy/metrics/resource: {status} {data[:200]!r}")
        text = data.decode()
    return parse_resource_metrics(text)


def parse_resource_metrics(text: str) -> pd.DataFrame:
    """Prometheus text (one sample a line: ``name{labels} value [timestamp]``) as rows; comments dropped."""
    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, rest = line.partition("} ") if "{" in line else line.partition(" ")
        name, _, labels = head.partition("{")
        value = rest.split()[0]
        rows.append({"metric": name, "labels": labels, "value": float(value)})
    return pd.DataFrame(rows, columns=["metric", "labels", "value"])


# ---- a ServiceAccount that may read Pod metrics in its namespace (the course's luffy-pods-admin) ----

def reader_objects(namespace: str, service_account: str) -> list[dict]:
    """A Role reading Pods and their metrics in ``namespace``, bound to the ServiceAccount."""
    from ..auth import rbac
    return [rbac.role(service_account, namespace=namespace, rules=[
                rbac.rule(["get", "list"], ["pods"]), rbac.rule(["get", "list"], ["pods"], groups=[GROUP])]),
            rbac.role_binding(service_account, namespace=namespace, role=service_account,
                              subjects=[f"system:serviceaccount:{namespace}:{service_account}"])]


def grant_metrics_reader(plan: Plan, namespace: str, service_account: str) -> None:
    """Steps: the ServiceAccount (created, or kept if it exists), then :func:`reader_objects` (an
    existing Role or RoleBinding of that name is backed up, replaced and put back at clean-up)."""
    plan.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service_account}}, namespace,
                step=f"serviceaccount-{service_account}",
                command=f"kubectl -n {namespace} create serviceaccount {service_account}")
    for obj in reader_objects(namespace, service_account):
        plan.apply(obj, namespace, step=f"{obj['kind'].lower()}-{service_account}",
                   command=f"kubectl -n {namespace} apply -f {obj['kind'].lower()}-{service_account}.yaml")


def request_token(plan: Plan, namespace: str, service_account: str, *, duration_seconds: int = 600):
    """A TokenRequest for the ServiceAccount as a step (``kubectl create token``): the token is never
    shown, and from the moment it exists every output masks it. Returns the Token (None in a dry run)."""
    from ..auth import tokens

    def act():
        token = tokens.request_token(plan.api, namespace, service_account, duration_seconds=duration_seconds)
        safety.register_secret(token._value)  # the token's value is private to Token; mask it everywhere
        return token

    return plan.step(f"token-{service_account}", f"request a {duration_seconds // 60}-minute token for "
                     f"ServiceAccount {namespace}/{service_account} (TokenRequest API; never shown)", act,
                     command=f"kubectl -n {namespace} create token {service_account} --duration={duration_seconds}s",
                     touches=[Ref("ServiceAccount", service_account, namespace)])


def probe_paths(namespace: str) -> list[str]:
    """The course's curl targets: Pod metrics in the namespace, the Pods themselves, node metrics."""
    return [f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/pods", f"/api/v1/namespaces/{namespace}/pods",
            f"/apis/{GROUP}/{VERSION}/nodes"]


def top_pods_as(token, namespace: str) -> pd.DataFrame:
    """``kubectl top pods --containers`` with the token alone (empty in a dry run: no token)."""
    return top_pods(token.api_client() if token is not None else None, namespace, containers=True)
