"""flannel's configuration as objects: render what kube-flannel would install, validate what a cluster has.

The kube-flannel DaemonSet's Pod does three things on every node (the course reads them from its spec):
its init containers copy the ``flannel`` CNI binary to ``/opt/cni/bin`` and the ConfigMap's
``cni-conf.json`` to ``/etc/cni/net.d/10-flannel.conflist``; then ``flanneld --kube-subnet-mgr``
reads the node's podCIDR from the API and ``net-conf.json``, writes ``/run/flannel/subnet.env`` and
programs the backend (flannel.1 + routes/ARP/fdb for vxlan, plain routes for host-gw).

On each Pod creation containerd runs the conflist: the ``flannel`` plugin reads subnet.env and calls
the ``bridge`` plugin with :func:`bridge_delegate`, which creates ``cni0`` and the Pod's veth, and
calls ``host-local`` for the IP.

    net_conf("10.244.0.0/16", "vxlan")                  # net-conf.json as a dict
    subnet_env("10.244.0.0/16", "10.244.1.0/24", "vxlan")  # /run/flannel/subnet.env
    validate_configmap(cm, cluster_cidr="10.244.0.0/16")   # a table of checks
    switch_backend(plan, "host-gw", namespace="kube-flannel")   # back up, patch, restart; put back at clean-up
"""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import diagnose
from ..errors import KubebookError
from ..objects import Ref, objects
from ..plan import Plan
from ..waits import wait_for

CONFIGMAP = "kube-flannel-cfg"
DAEMONSET = "kube-flannel-ds"
NAMESPACES = ("kube-flannel", "kube-system")   # current manifests, then older ones
POD_SELECTOR = "app=flannel"
CNI_NAME = "cbr0"                               # host-local keeps leases in /var/lib/cni/networks/cbr0
CNI_VERSION = "0.3.1"
BACKENDS = {"vxlan": 50, "host-gw": 0, "wireguard": 80, "udp": 28, "ipip": 20}   # type -> MTU overhead
VXLAN_DEFAULT_PORT = 8472


class FlannelConfigError(KubebookError):
    """A flannel configuration could not be rendered or read."""


def net_conf(network: str, backend: str = "vxlan", **backend_options: Any) -> dict:
    """``net-conf.json``: the Pod network and the backend. ``backend_options``: e.g. VNI=1, Port=8472."""
    net = _network(network, "Network")
    if backend not in BACKENDS:
        raise FlannelConfigError(f"backend {backend!r}: one of {', '.join(BACKENDS)}")
    return {"Network": str(net), "Backend": {"Type": backend, **backend_options}}


def cni_conflist(*, name: str = CNI_NAME, cni_version: str = CNI_VERSION) -> dict:
    """``10-flannel.conflist`` as kube-flannel installs it: flannel (delegating to bridge), then portmap."""
    return {"name": name, "cniVersion": cni_version,
            "plugins": [{"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
                        {"type": "portmap", "capabilities": {"portMappings": True}}]}


def configmap(network: str, backend: str = "vxlan", *, namespace: str = "kube-flannel") -> dict:
    """The kube-flannel ConfigMap kubebook expects for these parameters."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIGMAP, "namespace": namespace, "labels": {"app": "flannel", "tier": "node"}},
            "data": {"cni-conf.json": json.dumps(cni_conflist(), indent=2),
                     "net-conf.json": json.dumps(net_conf(network, backend), indent=2)}}


def mtu(backend: str, underlay_mtu: int = 1500) -> int:
    """The Pods' MTU flanneld writes as FLANNEL_MTU: the underlay's minus the backend's encapsulation."""
    if backend not in BACKENDS:
        raise FlannelConfigError(f"backend {backend!r}: one of {', '.join(BACKENDS)}")
    return underlay_mtu - BACKENDS[backend]


def subnet_env(network: str, node_cidr: str, backend: str = "vxlan", *, underlay_mtu: int = 1500,
               ip_masq: bool = True) -> dict[str, str]:
    """``/run/flannel/subnet.env`` as flanneld writes it from the node's podCIDR (its subnet "lease")."""
    net, sub = _network(network, "Network"), _network(node_cidr, "podCIDR")
    if not sub.subnet_of(net):
        raise FlannelConfigError(f"podCIDR {sub} is outside Network {net}: flanneld refuses to start")
    return {"FLANNEL_NETWORK": str(net),
            "FLANNEL_SUBNET": f"{sub.network_address + 1}/{sub.prefixlen}",   # cni0's address
            "FLANNEL_MTU": str(mtu(backend, underlay_mtu)),
            "FLANNEL_IPMASQ": "true" if ip_masq else "false"}


def subnet_env_text(env: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in env.items())


def bridge_delegate(env: dict[str, str], conflist: dict | None = None) -> dict:
    """What the flannel CNI plugin hands to the bridge plugin, from subnet.env and its delegate block."""
    conflist = conflist or cni_conflist()
    flannel = next((p for p in conflist["plugins"] if p.get("type") == "flannel"), None)
    if flannel is None:
        raise FlannelConfigError("the conflist has no flannel plugin")
    subnet = ipaddress.ip_interface(env["FLANNEL_SUBNET"]).network
    delegate = {"name": conflist["name"], "type": "bridge", "bridge": "cni0",
                "ipMasq": env.get("FLANNEL_IPMASQ") != "true",   # flanneld masquerades, so bridge need not
                "mtu": int(env["FLANNEL_MTU"]), "isGateway": True, **flannel.get("delegate", {}),
                "cniVersion": conflist.get("cniVersion", CNI_VERSION)}
    delegate["ipam"] = {"type": "host-local", "ranges": [[{"subnet": str(subnet)}]],
                        "routes": [{"dst": env["FLANNEL_NETWORK"]}],
                        "dataDir": f"/var/lib/cni/networks/{conflist['name']}"}
    return delegate


def cni_flow(env: dict[str, str]) -> pd.DataFrame:
    """Who does what when a Pod lands on the node, with this node's values."""
    subnet = ipaddress.ip_interface(env["FLANNEL_SUBNET"])
    first = subnet.network.network_address + 2
    rows = [("kubelet", "asks the runtime (CRI RunPodSandbox) for the Pod's sandbox", "pause container, netns"),
            ("containerd", "reads /etc/cni/net.d/10-flannel.conflist and runs its plugins in order",
             "flannel, then portmap from /opt/cni/bin"),
            ("flannel (CNI)", "reads /run/flannel/subnet.env and delegates to bridge",
             f"subnet {subnet.network}, routes to {env['FLANNEL_NETWORK']}, mtu {env['FLANNEL_MTU']}"),
            ("bridge", "creates cni0 with the gateway address, a veth pair: eth0 in the Pod, its peer in cni0",
             f"cni0 {subnet}"),
            ("host-local (IPAM)", "hands out the next free IP and records it on disk",
             f"{first}, ... recorded in /var/lib/cni/networks/{CNI_NAME}/"),
            ("portmap", "adds hostPort DNAT rules if the Pod asks for any", "")]
    return pd.DataFrame(rows, columns=["component", "does", "here"])


def _network(text: str, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.ip_network(str(text))
    except ValueError as exc:
        raise FlannelConfigError(f"{what} {text!r} is not a CIDR ({exc})") from None


# ---------------------------------------------------------------- validation
def _load(text_or_obj: str | dict | None, what: str) -> tuple[dict | None, str]:
    if text_or_obj is None or text_or_obj == "":
        return None, f"{what} missing"
    if isinstance(text_or_obj, dict):
        return text_or_obj, ""
    try:
        obj = json.loads(text_or_obj)
    except json.JSONDecodeError as exc:
        return None, f"{what} is not JSON: {exc}"
    return (obj, "") if isinstance(obj, dict) else (None, f"{what} is not a JSON object")


def validate_net_conf(conf: str | dict | None, *, cluster_cidr: str = "", node_cidrs: list[str] = ()) -> list[dict]:
    """Checks of ``net-conf.json``: a list of {check, ok, detail}."""
    out: list[dict] = []
    obj, error = _load(conf, "net-conf.json")
    out.append({"check": "net-conf.json parses", "ok": obj is not None, "detail": error})
    if obj is None:
        return out
    network = obj.get("Network")
    try:
        net = _network(network, "Network") if network else None
    except FlannelConfigError as exc:
        net, error = None, str(exc)
    else:
        error = "" if net else "no Network (flanneld needs it unless EnableIPv4 is false)"
    out.append({"check": "Network is a CIDR", "ok": net is not None, "detail": str(net) if net else error})
    if net is not None and cluster_cidr:
        cluster = _network(cluster_cidr, "cluster CIDR")
        out.append({"check": "Network matches the cluster CIDR", "ok": net == cluster,
                    "detail": f"Network {net}, cluster CIDR {cluster}" +
                    ("" if net == cluster else ": kcm's --cluster-cidr and flannel's Network must agree")})
    if net is not None and node_cidrs:
        outside = [c for c in node_cidrs if not _network(c, "podCIDR").subnet_of(net)]
        out.append({"check": "every node's podCIDR inside Network", "ok": not outside,
                    "detail": ("outside: " + ", ".join(outside)) if outside else f"{len(node_cidrs)} podCIDRs"})
    backend = obj.get("Backend") or {}
    kind = backend.get("Type", "")
    out.append({"check": "Backend.Type known", "ok": kind in BACKENDS,
                "detail": kind or "no Backend.Type (flanneld falls back to udp, which nobody wants)"})
    if kind == "vxlan":
        port, vni = backend.get("Port", VXLAN_DEFAULT_PORT), backend.get("VNI", 1)
        ok = isinstance(port, int) and 0 < port < 65536 and isinstance(vni, int) and 0 < vni < 2 ** 24
        out.append({"check": "vxlan VNI and Port", "ok": ok, "detail": f"VNI {vni}, Port {port}"})
    return out


def validate_conflist(conf: str | dict | None) -> list[dict]:
    """Checks of ``cni-conf.json`` (installed as 10-flannel.conflist)."""
    out: list[dict] = []
    obj, error = _load(conf, "cni-conf.json")
    out.append({"check": "cni-conf.json parses", "ok": obj is not None, "detail": error})
    if obj is None:
        return out
    plugins = obj.get("plugins")
    out.append({"check": "a conflist (name, cniVersion, plugins)",
                "ok": bool(obj.get("name")) and bool(obj.get("cniVersion")) and isinstance(plugins, list),
                "detail": f"name {obj.get('name')!r}, cniVersion {obj.get('cniVersion')!r}"})
    types = [p.get("type") for p in plugins or [] if isinstance(p, dict)]
    out.append({"check": "flannel is the first plugin", "ok": types[:1] == ["flannel"],
                "detail": " → ".join(map(str, types)) or "no plugins"})
    delegate = next((p.get("delegate", {}) for p in plugins or [] if isinstance(p, dict)
                     and p.get("type") == "flannel"), {})
    bad = {k: delegate[k] for k in ("type", "bridge") if k in delegate and delegate[k] not in ("bridge", "cni0")}
    out.append({"check": "flannel delegates to bridge on cni0", "ok": not bad,
                "detail": f"delegate overrides {bad}" if bad else "bridge cni0 (defaults)"})
    return out


def validate_configmap(cm: dict | None, *, cluster_cidr: str = "", node_cidrs: list[str] = ()) -> pd.DataFrame:
    """Every check of a kube-flannel ConfigMap (as a dict, e.g. ``kubectl get cm -o yaml`` loaded)."""
    cols = ["check", "ok", "detail"]
    if cm is None:
        return pd.DataFrame([{"check": "ConfigMap present", "ok": False, "detail": "no ConfigMap given"}],
                           columns=cols)
    data = cm.get("data") or {}
    rows = [{"check": "ConfigMap present", "ok": True,
             "detail": f"{(cm.get('metadata') or {}).get('namespace', '')}/{(cm.get('metadata') or {}).get('name', '')}"}]
    rows += validate_conflist(data.get("cni-conf.json"))
    rows += validate_net_conf(data.get("net-conf.json"), cluster_cidr=cluster_cidr, node_cidrs=list(node_cidrs))
    return pd.DataFrame(rows, columns=cols)


def configmap_under_test(api, path: str, network: str, backend: str) -> tuple[dict, str]:
    """The ConfigMap to validate: a saved file, else the cluster's, else (said so) kubebook's rendering."""
    if path:
        return load_configmap_file(path), f"ConfigMap from {path}"
    found = find_configmap(api)
    if found is not None:
        return found, f"ConfigMap {found['metadata']['namespace']}/{CONFIGMAP} from the cluster"
    return configmap(network, backend), (f"no {CONFIGMAP} in {' or '.join(NAMESPACES)}: flannel is not "
                                         "installed here, so kubebook's own rendering is checked instead")


def load_configmap_file(path: str | Path) -> dict:
    """A ConfigMap saved with ``kubectl get cm kube-flannel-cfg -o yaml``."""
    try:
        obj = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FlannelConfigError(f"cannot read ConfigMap file {path}: {exc}") from None
    if not isinstance(obj, dict) or obj.get("kind") != "ConfigMap":
        raise FlannelConfigError(f"{path} does not hold a ConfigMap")
    return obj


# ---------------------------------------------------------------- the live cluster
def find_configmap(api, *, name: str = CONFIGMAP) -> dict | None:
    """``kube-flannel-cfg`` from kube-flannel (current manifests) or kube-system (older ones); None if absent."""
    core = client.CoreV1Api(api)
    for ns in NAMESPACES:
        try:
            return api.sanitize_for_serialization(core.read_namespaced_config_map(name, ns))
        except ApiException as exc:
            if exc.status != 404:
                raise
    return None


def flannel_pods(api, namespace: str) -> pd.DataFrame:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=POD_SELECTOR).items
    return pd.DataFrame([{"pod": p.metadata.name, "node": p.spec.node_name, "phase": p.status.phase,
                          "started": p.status.start_time} for p in pods], columns=["pod", "node", "phase", "started"])


NO_SWITCH = "none"


def switch_scope(namespace: str, backend: str) -> list[str]:
    """What a plan must also name for :func:`switch_backend`: flannel's namespace, unless no switch is
    asked (``backend`` "none")."""
    return [] if backend in (NO_SWITCH, "") else [f"namespace/{namespace}"]


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def restart_pods(plan: Plan, namespace: str, *, daemonset: str = DAEMONSET, step: str = "restart-flannel",
                 timeout: float = 300, want: int | None = None, recorded: dict | None = None) -> None:
    """Delete flannel's Pods so the DaemonSet recreates them (flanneld reads net-conf.json only at
    start), then wait until new ones are Ready on every node the DaemonSet covers, or, with ``want``
    (after a restore), on as many as were Ready before. ``recorded`` gets ``ready``: how many were
    Ready before this restart. The wait stops within seconds with the reason when it cannot succeed
    (no node to run on, Pods refused or unschedulable)."""
    core = client.CoreV1Api(plan.api)

    def listed() -> list:
        return core.list_namespaced_pod(namespace, label_selector=POD_SELECTOR).items

    def current() -> list[str]:
        return sorted(p.metadata.name for p in listed())

    old = current()   # what the plan shows; the step deletes what is there when it runs
    ds_ref = Ref("DaemonSet", daemonset, namespace)

    def delete() -> str:
        pods = listed()
        old[:] = sorted(p.metadata.name for p in pods)
        if recorded is not None:
            recorded["ready"] = sum(_ready(plan.api.sanitize_for_serialization(p)) for p in pods)
        for pod in old:
            try:
                core.delete_namespaced_pod(pod, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return f"{len(old)} Pod(s) deleted"

    def recreated() -> str:
        def desired() -> int:
            ds = objects(plan.api).get(ds_ref) or {}
            return int((ds.get("status") or {}).get("desiredNumberScheduled") or 0)

        def done(pods: dict[str, dict]) -> bool:
            fresh = [p for n, p in pods.items() if n not in old and not p["metadata"].get("deletionTimestamp")]
            if set(pods) & set(old):
                return False
            wanted = desired() if want is None else want
            return (want is not None or wanted > 0) and sum(map(_ready, fresh)) >= wanted

        pods = wait_for(plan.api, "pods", done, namespace=namespace, label_selector=POD_SELECTOR, timeout=timeout,
                        what=f"flannel Pods in {namespace} recreated and Ready",
                        diagnose=lambda _: diagnose.daemonset(plan.api, objects(plan.api).get(ds_ref),
                                                              namespace=namespace, name=daemonset))
        return f"{len(pods)} Pod(s) Ready: {', '.join(sorted(pods))}"

    plan.step(step, f"delete the flannel Pods ({POD_SELECTOR}: {', '.join(old) or 'none now'}) so DaemonSet "
              f"{daemonset} recreates them and flanneld reads the ConfigMap again", delete,
              command=f"kubectl -n {namespace} delete pod -l {POD_SELECTOR}",
              touches=[ds_ref, *(Ref("Pod", p, namespace) for p in old)])
    plan.wait(f"{step}-ready", f"DaemonSet {namespace}/{daemonset} runs a new Ready flannel Pod on each of its nodes"
              if want is None else f"{namespace} has as many new Ready flannel Pods as before the switch ({want})"
              if want else "the flannel Pods that were there are gone (none was Ready before the switch)", recreated)


def switch_backend(plan: Plan, backend: str, *, namespace: str = "kube-flannel", name: str = CONFIGMAP,
                   daemonset: str = DAEMONSET, timeout: float = 300) -> pd.DataFrame:
    """The course's backend change on a real cluster: back up and patch net-conf.json in flannel's
    ConfigMap, then recreate flannel's Pods so they read it; clean-up puts the ConfigMap back from its
    backup and recreates the Pods again. ``backend`` "none": nothing asked. Returns net-conf.json before
    and after (or why nothing changes).

    flanneld reads net-conf.json only at start; the new Pods log ``Found network config - Backend
    type: <backend>`` and rewrite the routes."""
    if backend in (NO_SWITCH, ""):
        return pd.DataFrame([{"net-conf.json": "switch", "value": "(not asked: new_backend is none)"}])
    if backend not in BACKENDS:
        raise FlannelConfigError(f"backend {backend!r}: one of {', '.join(BACKENDS)}")
    ref = Ref("ConfigMap", name, namespace)
    cm = objects(plan.api).get(ref)
    if cm is None:
        plan.check("find-flannel", f"find ConfigMap {namespace}/{name}: absent, so flannel is not installed here "
                   "(the lab runs no CNI); nothing to switch", lambda: "absent: nothing to switch")
        return pd.DataFrame([{"net-conf.json": "before", "value": f"(no ConfigMap {namespace}/{name})"}])
    before, error = _load((cm.get("data") or {}).get("net-conf.json"), "net-conf.json")
    if before is None:
        raise FlannelConfigError(f"{namespace}/{name}: {error}; fix it by hand first")
    after = {**before, "Backend": {"Type": backend}}

    def edit(current: dict) -> dict | None:
        now, _ = _load((current.get("data") or {}).get("net-conf.json"), "net-conf.json")
        wanted = {**(now or before), "Backend": {"Type": backend}}
        return None if now == wanted else {"data": {"net-conf.json": json.dumps(wanted, indent=2)}}

    recorded: dict = {}
    # registered first: a failed restart below must still be undone
    plan.at_cleanup(f"restore-{name}", f"put {namespace}/{name} back from its backup, then recreate the flannel "
                    "Pods so they read it again", lambda: _restore(plan, ref, daemonset, timeout, recorded),
                    command=f"kubectl replace -f backup.yaml; kubectl -n {namespace} delete pod -l {POD_SELECTOR}",
                    touches=[ref, Ref("DaemonSet", daemonset, namespace)])
    plan.modify(ref, edit, step="patch-net-conf", restore=False,
                description=f"back up {namespace}/{name}, then set Backend.Type to {backend} in its net-conf.json "
                            "(put back from the backup at clean-up)",
                command=f"kubectl -n {namespace} get cm {name} -o yaml > backup.yaml; kubectl -n {namespace} edit cm "
                        f"{name}   # \"Backend\": {{\"Type\": \"{backend}\"}}")
    changed = before != after
    if changed:
        restart_pods(plan, namespace, daemonset=daemonset, timeout=timeout, recorded=recorded)
    return pd.DataFrame([{"net-conf.json": "before", "value": json.dumps(before)},
                         {"net-conf.json": "after", "value": json.dumps(after)}])


def _restore(plan: Plan, ref: Ref, daemonset: str, timeout: float, recorded: dict) -> str:
    change = plan.record.changed.get(ref)
    if change is None:
        return "nothing to put back: the run did not change it"
    plan.restore(change)
    # back to the state recorded before the switch, not an ideal one
    restart_pods(plan, ref.namespace, daemonset=daemonset, step="restart-flannel-again", timeout=timeout,
                 want=recorded.get("ready", 0))
    return f"restored from {change.backup}; flannel Pods recreated"
