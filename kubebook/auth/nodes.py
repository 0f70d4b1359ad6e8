"""Node identities: the kubelet's client certificate, and what the Node authorizer lets it do.

A kubelet authenticates with a certificate whose CN is ``system:node:<node name>`` and whose O
is ``system:nodes`` (kubeadm: ``/var/lib/kubelet/pki/kubelet-client-current.pem``). No RBAC
binding grants that group much; the Node authorizer (``--authorization-mode=Node,RBAC``) does,
and only for the node's own objects and what its Pods use. NodeRestriction (admission) then
limits what it may write. :func:`node_checks` asks the apiserver about both kinds of request.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from cryptography import x509
from kubernetes import client

from ..errors import KubebookError
from .access import Resource, can
from .certificates import describe, identity
from .subjects import Subject

NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
KUBELET_CLIENT = Path("/var/lib/kubelet/pki/kubelet-client-current.pem")
KUBEADM_CA = "/etc/kubernetes/pki/ca.crt"


def read_certificate(path: str | Path) -> x509.Certificate:
    """The first certificate in ``path`` (the kubelet's file holds the certificate and its key: only
    the certificate is read)."""
    text = Path(path).expanduser().read_bytes()
    start = text.find(b"-----BEGIN CERTIFICATE-----")
    if start < 0:
        raise KubebookError(f"{path}: no certificate found")
    return x509.load_pem_x509_certificate(text[start:])


def explain(cert: x509.Certificate, *, ca: x509.Certificate | None = None) -> pd.DataFrame:
    """What the apiserver makes of a node's certificate: user, groups, and whether the Node authorizer applies."""
    user, groups = identity(cert)
    is_node = user.startswith(NODE_PREFIX) and NODES_GROUP in groups
    facts = {**describe(cert, ca=ca),
             "node name": user.removeprefix(NODE_PREFIX) if is_node else "",
             "Node authorizer applies": "yes: user system:node:<name> in group system:nodes" if is_node else
             "no: needs CN=system:node:<name> and O=system:nodes"}
    return pd.DataFrame({"field": list(facts), "value": [str(v) for v in facts.values()]})


def node_subject(cert: x509.Certificate) -> Subject:
    user, groups = identity(cert)
    if NODES_GROUP not in groups:
        raise KubebookError(f"{user}: not in group {NODES_GROUP}, so not a node identity")
    return Subject("User", user, member_of=tuple(groups))


def node_checks(api: client.ApiClient, node: str, *, other_node: str, namespace: str = "kubebook-auth") -> pd.DataFrame:
    """Requests a kubelet makes (and some it must not), asked as ``system:node:<node>`` in ``system:nodes``.

    Allowed own-node requests are the Node authorizer's; the same request for ``other_node``
    is refused with its reason. ``decided by`` says which authorizer answered.
    """
    who = Subject("User", f"{NODE_PREFIX}{node}", member_of=(NODES_GROUP,))
    own_pods = f"spec.nodeName={node}"
    restricted = "NodeRestriction (admission) then refuses it: a node may modify only its own Node"
    cases = [  # verb, resource, namespace, name, field selector, what it means, what admission adds
        ("get", "nodes", "", node, "", "read its own Node", ""),
        ("get", "nodes", "", other_node, "", "read another Node", ""),
        ("update", "nodes/status", "", node, "", "report its own status", ""),
        ("update", "nodes/status", "", other_node, "", "report another node's status", restricted),
        ("update", "leases.coordination.k8s.io", "kube-node-lease", node, "", "renew its own heartbeat Lease", ""),
        ("update", "leases.coordination.k8s.io", "kube-node-lease", other_node, "", "renew another node's Lease", ""),
        ("list", "pods", "", "", own_pods, "list the Pods bound to it", ""),
        ("list", "pods", "", "", "", "list every Pod", ""),
        ("create", "events", namespace, "", "", "record Events", ""),
        ("get", "secrets", namespace, "not-used-by-any-pod", "", "read a Secret no Pod on it uses", ""),
        ("list", "secrets", "", "", "", "list every Secret", ""),
        ("create", "certificatesigningrequests.certificates.k8s.io", "", "", "", "request a new client certificate", ""),
        ("delete", "nodes", "", other_node, "", "delete another Node", ""),
    ]
    rows = []
    for verb, resource, ns, name, selector, meaning, admission in cases:
        row = can(api, who, verb, Resource.parse(resource), namespace=ns, name=name, field_selector=selector)
        reason = row["reason"]
        decided = "RBAC" if reason.startswith("RBAC") else \
            ("no authorizer" if reason == "no RBAC rule allows it" else "Node authorizer")
        rows.append({"request": meaning, "verb": verb, "resource": resource, "namespace": ns or "*", "name": name,
                     "field selector": selector, "allowed": row["allowed"], "decided by": decided, "reason": reason,
                     "admission": admission})
    return pd.DataFrame(rows, columns=["request", "verb", "resource", "namespace", "name", "field selector",
                                       "allowed", "decided by", "reason", "admission"])


def certificate_and_ca(target, *, cert: str | Path = str(KUBELET_CLIENT), ca: str | Path = KUBEADM_CA,
                       node: str = "") -> tuple[x509.Certificate, x509.Certificate | None]:
    """The node certificate to explain and the CA to check it with.

    On a kubeadm node: the kubelet's own file and the cluster CA (None when that file is absent). On a
    kubebook lab (``target.lab``: its kubelets are simulated and hold no certificate): one issued for
    ``node`` by the lab's CA.
    """
    lab = getattr(target, "lab", None)
    if lab is not None:
        return lab_node_certificate(lab, node), x509.load_pem_x509_certificate(lab.pki.ca_crt.read_bytes())
    ca_path = Path(ca).expanduser() if ca else None
    ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes()) if ca_path and ca_path.is_file() else None
    return read_certificate(cert), ca_cert


def lab_node_certificate(lab, node: str) -> x509.Certificate:
    """On the kubebook lab, whose kubelets are simulated, a node certificate as kubeadm's kubelet would
    hold (signed by the lab's CA, kept in memory: its key is discarded)."""
    return lab.pki.client(f"{NODE_PREFIX}{node}", (NODES_GROUP,)).cert
