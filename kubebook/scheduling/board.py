"""The node board: nodes × labels, taints, conditions, allocatable vs requested, and their Pods.

    node_board(Snapshot.take(api))

Built from a :class:`~kubebook.scheduling.explain.Snapshot`, so the same function renders a
one-off listing and the live widget in ``widgets/node_board.py``, which keeps its snapshot
current from watches.
"""
from __future__ import annotations

import pandas as pd

from .explain import Snapshot, describe_taint, format_quantity, quantity

# Labels every node has; the board shows the others, which are the ones selectors are written for.
_COMMON_LABEL_PREFIXES = ("kubernetes.io/", "beta.kubernetes.io/", "node.kubernetes.io/exclude")
_HEALTHY = {"Ready": "True"}  # every other condition (MemoryPressure, DiskPressure, ...) is healthy when False


def _conditions(node: dict) -> str:
    bad = [c["type"] for c in (node.get("status") or {}).get("conditions") or []
           if c.get("status") != _HEALTHY.get(c["type"], "False")]
    return "Ready" if not bad else "problems: " + ", ".join(bad)


def _used(snap: Snapshot, node: str, resource: str, allocatable: dict) -> str:
    have = quantity(allocatable.get(resource, "0"), resource)
    used = snap.requested.get(node, {}).get(resource, 0)
    share = f" ({100 * used / have:.0f}%)" if have else ""
    return f"{format_quantity(used, resource)} / {format_quantity(have, resource)}{share}"


def node_board(snap: Snapshot, *, max_pods: int = 6) -> pd.DataFrame:
    rows = []
    for node in sorted(snap.nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        labels = node["metadata"].get("labels") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        bound = sorted(f"{p['metadata'].get('namespace')}/{p['metadata']['name']}" for p in snap.assigned.get(name, []))
        rows.append({
            "node": name,
            "conditions": _conditions(node) + (", SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable")
                                               else ""),
            "labels": ", ".join(f"{k}={v}" if v else k for k, v in sorted(labels.items())
                                if not k.startswith(_COMMON_LABEL_PREFIXES)),
            "taints": ", ".join(describe_taint(t) for t in (node.get("spec") or {}).get("taints") or []),
            "cpu requested": _used(snap, name, "cpu", allocatable),
            "memory requested": _used(snap, name, "memory", allocatable),
            "pods": f"{len(bound)} / {allocatable.get('pods', '?')}",
            "pod names": ", ".join(bound[:max_pods]) + (f" (+{len(bound) - max_pods})" if len(bound) > max_pods else ""),
        })
    return pd.DataFrame(rows, columns=["node", "conditions", "labels", "taints", "cpu requested",
                                       "memory requested", "pods", "pod names"])
