"""The lab's nodes: Node objects as kubeadm and a kubelet would register them, played by kwok."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .. import versions
from ..connect import create_or_keep
from ..errors import LabError
from .components import KWOK_ANNOTATION, MASTER
from ..ports import LOOPBACK

if TYPE_CHECKING:
    from .lab import Lab


def node_names(count: int) -> list[str]:
    """The course's nodes: k8s-master, k8s-slave1, k8s-slave2, ... (count in total)."""
    if count < 1:
        raise LabError("a lab needs at least one node")
    return [MASTER] + [f"k8s-slave{i}" for i in range(1, count)]


def node_order(name: str) -> tuple[int, int]:
    return (0, 0) if name == MASTER else (1, int(name.removeprefix("k8s-slave") or 0))


def node_manifest(lab: "Lab", name: str) -> dict:
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
            "daemonEndpoints": {"kubeletEndpoint": {"Port": lab.ports["kwok"]}},
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "osImage": "kwok",
                         "kubeletVersion": versions.KUBERNETES, "kubeProxyVersion": versions.KUBERNETES,
                         "containerRuntimeVersion": f"kwok-{versions.KWOK}", "kernelVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        },
    }


def register(lab: "Lab") -> list[str]:
    """Create the Node objects that do not exist yet; the names created."""
    from kubernetes import client
    core = client.CoreV1Api(lab.api_client())
    existing = {n.metadata.name for n in core.list_node().items}
    missing = [name for name in lab.nodes if name not in existing]
    for name in missing:
        create_or_keep(core.create_node, node_manifest(lab, name))
    return missing


def wait_ready(lab: "Lab", deadline: float) -> None:
    """Every node Ready with a podCIDR, and the ServiceAccount Pods need (made by a controller)."""
    from ..waits import wait_for
    api = lab.api_client()
    wait_for(api, "nodes", lambda nodes: all(_node_ready(nodes.get(n)) for n in lab.nodes),
             timeout=max(1.0, deadline - time.monotonic()),
             what=f"nodes {', '.join(lab.nodes)} Ready, with a podCIDR and without the not-ready taint")
    wait_for(api, "serviceaccounts", lambda sas: "default" in sas, namespace="default",
             timeout=max(1.0, deadline - time.monotonic()), what="ServiceAccount default/default")


NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def _node_ready(node) -> bool:
    """Ready, given its podCIDR by kube-controller-manager (kwok takes Pod IPs from it), and rid of
    the not-ready taint the node lifecycle controller sets until it has seen the node Ready (the
    baseline `lab reset` returns to must not hold it)."""
    if node is None or not (node.get("spec") or {}).get("podCIDR"):
        return False
    if any(t.get("key") in NOT_READY_TAINTS for t in (node.get("spec") or {}).get("taints") or []):
        return False
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False
