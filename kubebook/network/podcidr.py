"""Pod IP uniqueness: the cluster CIDR, each node's podCIDR, and where every Pod's IP comes from.

kube-controller-manager (``--allocate-node-cidrs --cluster-cidr=10.244.0.0/16``, blocks of
``--node-cidr-mask-size``, /24 by default) gives each Node a disjoint ``spec.podCIDR``; the CNI
plugin on that node hands out Pod IPs only from it, so no two Pods in the cluster share an IP.

The cluster CIDR itself is a kcm flag, not an API field. :func:`cluster_cidr_sources` looks where a
kubeadm cluster leaves traces of it (the ``kubeadm-config`` ConfigMap, the kcm mirror Pod's command)
and always adds the smallest network covering every node's podCIDR, which the real one must contain.

    cluster_cidr_sources(api)    # where the cluster CIDR was found, or inferred
    node_cidrs(api)              # node, podCIDRs, internal IP, flannel annotations
    pod_ips(api)                 # every Pod: IP, node, node's podCIDR, inside it?
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

import pandas as pd
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError

FLANNEL_ANNOTATIONS = ("flannel.alpha.coreos.com/public-ip", "flannel.alpha.coreos.com/backend-type",
                       "flannel.alpha.coreos.com/backend-data")


def parse_network(text: str, what: str = "network") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(text).strip())
    except ValueError as exc:
        raise KubebookError(f"{what} {text!r} is not a CIDR ({exc})") from None


def covering_network(cidrs: Iterable[str]) -> ipaddress.IPv4Network | None:
    """The smallest IPv4 network containing every CIDR given (``None`` when there is none).

    10.244.0.0/24, 10.244.1.0/24, 10.244.2.0/24 → 10.244.0.0/22: a lower bound of the cluster CIDR,
    which kcm's flag may well set wider (the course's 10.244.0.0/16)."""
    nets = [parse_network(c) for c in cidrs]
    nets = [n for n in nets if n.version == 4]
    if not nets:
        return None
    low = min(int(n.network_address) for n in nets)
    high = max(int(n.broadcast_address) for n in nets)
    prefix = 32 - (low ^ high).bit_length()
    return ipaddress.ip_network(f"{ipaddress.ip_address(low)}/{prefix}", strict=False)


def list_nodes(api) -> list[dict]:
    return [api.sanitize_for_serialization(n) for n in client.CoreV1Api(api).list_node().items]


def _internal_ip(node: dict) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return a.get("address", "")
    return ""


def node_cidrs(api) -> pd.DataFrame:
    """``kubectl get nodes -o custom-columns=...podCIDRs`` plus what flanneld annotates on the node."""
    rows = []
    for n in list_nodes(api):
        spec = n.get("spec") or {}
        annotations = n["metadata"].get("annotations") or {}
        cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        rows.append({"node": n["metadata"]["name"], "podCIDRs": ", ".join(cidrs),
                     "addresses in range": sum(parse_network(c).num_addresses for c in cidrs),
                     "internalIP": _internal_ip(n),
                     "flannel backend": annotations.get(FLANNEL_ANNOTATIONS[1], ""),
                     "flannel public-ip": annotations.get(FLANNEL_ANNOTATIONS[0], "")})
    return pd.DataFrame(rows, columns=["node", "podCIDRs", "addresses in range", "internalIP",
                                       "flannel backend", "flannel public-ip"])


def _flag(command: list[str], name: str) -> str:
    for i, arg in enumerate(command):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(command):
            return command[i + 1]
    return ""


def cluster_cidr_sources(api) -> pd.DataFrame:
    """Every place the cluster CIDR shows: kubeadm-config, the kcm mirror Pod, and the nodes (inferred)."""
    core = client.CoreV1Api(api)
    rows = []
    try:
        cm = core.read_namespaced_config_map("kubeadm-config", "kube-system")
        conf = yaml.safe_load((cm.data or {}).get("ClusterConfiguration", "")) or {}
        subnet = (conf.get("networking") or {}).get("podSubnet", "")
        rows.append({"source": "ConfigMap kube-system/kubeadm-config (networking.podSubnet)",
                     "cluster CIDR": subnet, "note": "what kubeadm passed to kcm as --cluster-cidr"})
    except ApiException as exc:
        if exc.status not in (403, 404):
            raise
        rows.append({"source": "ConfigMap kube-system/kubeadm-config", "cluster CIDR": "",
                     "note": "absent (not a kubeadm cluster)" if exc.status == 404 else "not readable (RBAC)"})
    try:
        pods = core.list_namespaced_pod("kube-system", label_selector="component=kube-controller-manager").items
    except ApiException as exc:
        if exc.status != 403:
            raise
        pods = []
    flags = [_flag(list(c.command or []) + list(c.args or []), "--cluster-cidr")
             for p in pods for c in p.spec.containers]
    rows.append({"source": "kube-controller-manager mirror Pod (--cluster-cidr)",
                 "cluster CIDR": next((f for f in flags if f), ""),
                 "note": "flag found" if any(flags) else
                 "no kcm Pod in kube-system (kcm runs as a process, as in the lab)" if not pods else
                 "kcm Pod found without --cluster-cidr"})
    cidrs = [c for c in node_cidrs(api)["podCIDRs"] for c in c.split(", ") if c]
    cover = covering_network(cidrs)
    rows.append({"source": "inferred from every node's spec.podCIDRs",
                 "cluster CIDR": str(cover) if cover else "",
                 "note": (f"smallest network holding the {len(cidrs)} podCIDRs: the real --cluster-cidr "
                          "contains it and is often wider") if cover else "no node has a podCIDR "
                         "(kcm runs without --allocate-node-cidrs, or the CNI allocates by itself)"})
    return pd.DataFrame(rows, columns=["source", "cluster CIDR", "note"])


def cluster_cidr(api, stated: str = "") -> str:
    """``stated`` if given (checked), else the best source: kubeadm-config, the kcm flag, the inference."""
    sources = cluster_cidr_sources(api)
    if stated:
        net = parse_network(stated, "cluster_cidr")
        outside = [c for c in node_cidrs(api)["podCIDRs"] for c in c.split(", ")
                   if c and not parse_network(c).subnet_of(net)]
        if outside:
            raise KubebookError(f"cluster_cidr {net} does not contain the podCIDR(s) {', '.join(outside)}")
        return str(net)
    for value in sources["cluster CIDR"]:
        if value:
            return value.split(",")[0]
    raise KubebookError("no podCIDR on any node and no kubeadm trace: state cluster_cidr")


def pod_ips(api, *, namespace: str = "") -> pd.DataFrame:
    """Every Pod with an IP: its node, the node's podCIDR and whether the IP lies in it.

    hostNetwork Pods share their node's IP, so they are listed but not checked against the podCIDR."""
    core = client.CoreV1Api(api)
    ranges = {n["metadata"]["name"]: [parse_network(c) for c in ((n.get("spec") or {}).get("podCIDRs") or [])]
              for n in list_nodes(api)}
    pods = core.list_namespaced_pod(namespace).items if namespace else core.list_pod_for_all_namespaces().items
    rows = []
    for p in pods:
        node = p.spec.node_name or ""
        ip = p.status.pod_ip or ""
        host = bool(p.spec.host_network)
        inside = None
        if ip and not host:
            addr = ipaddress.ip_address(ip)
            inside = any(addr in r for r in ranges.get(node, []) if r.version == addr.version)
        rows.append({"namespace": p.metadata.namespace, "pod": p.metadata.name, "node": node, "podIP": ip,
                     "hostNetwork": host, "node podCIDR": ", ".join(map(str, ranges.get(node, []))),
                     "in node podCIDR": inside,
                     "reserved on a CNI node": reserved_role(ip, ranges.get(node, [])) if inside else ""})
    return pd.DataFrame(rows, columns=["namespace", "pod", "node", "podIP", "hostNetwork", "node podCIDR",
                                       "in node podCIDR", "reserved on a CNI node"])


def reserved_role(ip: str, ranges: list) -> str:
    """What ``ip`` is on a node run by flannel's bridge + host-local, if host-local would never hand it out:
    the subnet's network address (flannel.1 uses it), its first address (the cni0 gateway) or broadcast."""
    addr = ipaddress.ip_address(ip)
    for r in ranges:
        if addr in r:
            if addr == r.network_address:
                return "network address (flannel.1's VTEP address)"
            if addr == r.network_address + 1:
                return "cni0 gateway"
            if addr == r.broadcast_address:
                return "broadcast"
    return ""


def per_node(table: pd.DataFrame) -> pd.DataFrame:
    """Pods with an IP per node, and how many of those lie in the node's podCIDR."""
    checked = table[(table["podIP"] != "") & (~table["hostNetwork"])]
    if not len(checked):
        return pd.DataFrame(columns=["node", "node podCIDR", "pods", "in podCIDR", "outside"])
    out = checked.groupby(["node", "node podCIDR"]).agg(
        pods=("pod", "count"), **{"in podCIDR": ("in node podCIDR", "sum")}).reset_index()
    out["outside"] = out["pods"] - out["in podCIDR"]
    return out


def duplicate_ips(table: pd.DataFrame) -> pd.DataFrame:
    """Pod IPs used by more than one (non-hostNetwork) Pod: what per-node podCIDRs prevent."""
    checked = table[(table["podIP"] != "") & (~table["hostNetwork"])]
    return checked[checked.duplicated("podIP", keep=False)].sort_values("podIP")


def node_pod_cidrs(api, names: list[str]) -> list[str]:
    """The (first IPv4) podCIDR of each named node, in order; a node without one is an error."""
    found = {n["metadata"]["name"]: n for n in list_nodes(api)}
    out = []
    for name in names:
        if name not in found:
            raise KubebookError(f"node {name!r} not found (nodes: {', '.join(sorted(found))})")
        spec = found[name].get("spec") or {}
        v4 = [c for c in spec.get("podCIDRs") or [] if parse_network(c).version == 4]
        if not v4:
            raise KubebookError(f"node {name} has no IPv4 podCIDR (is kcm run with --allocate-node-cidrs?)")
        out.append(v4[0])
    return out


def all_pod_cidrs(api) -> list[str]:
    """Every podCIDR of every node (nodes without one contribute nothing)."""
    return [c for n in list_nodes(api) for c in ((n.get("spec") or {}).get("podCIDRs") or [])]


def wait_pod_ips(plan, namespace: str, selector: str, *, timeout: float = 60) -> str | None:
    """Wait (a step of ``plan``) until every scheduled Pod matching ``selector`` has an IP (the CNI, or
    kwok, gave it one); stops with the reason when a Pod cannot be scheduled or started."""
    from .. import diagnose
    from ..waits import wait_for

    def act() -> str:
        pods = wait_for(plan.api, "pods", lambda ps: bool(ps) and all(
            (p.get("status") or {}).get("podIP") for p in ps.values() if (p.get("spec") or {}).get("nodeName")),
            namespace=namespace, label_selector=selector, timeout=timeout, what=f"Pod IPs in {namespace} ({selector})",
            diagnose=lambda _: diagnose.pods(plan.api, namespace, selector, f"the Pods {selector}"))
        return f"{len(pods)} Pods with an IP"

    return plan.wait(f"pod-ips-{namespace}", f"every scheduled Pod {selector} in {namespace} has an IP", act)


def node_subnet_env(api, node: str, network: str, backend: str = "vxlan") -> dict[str, str]:
    """``/run/flannel/subnet.env`` as flanneld would write it on ``node`` (from its podCIDR)."""
    from .flannel import subnet_env
    return subnet_env(network, node_pod_cidrs(api, [node])[0], backend)
