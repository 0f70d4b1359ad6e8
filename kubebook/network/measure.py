"""Traffic through the netns lab: ping tables and the vxlan / host-gw comparison (numbers, one run).

    ping(plan, [("kb-netlab-pod1", "10.244.2.2")], count=3)   # a check after the build (skipped in a dry run)
    compare_backends(plan, lab, nodes, count=20)   # builds each backend in turn and measures it
"""
from __future__ import annotations

import pandas as pd

from ..plan import Plan
from . import topology
from .netns import NetLab, largest_payload, links, ping


PING_COLUMNS = ["from", "to", "sent", "received", "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "error"]


def ping_table(pairs: list[tuple[str, str]], *, count: int = 3, timeout: float = 1.0) -> pd.DataFrame:
    """One ping run per (namespace, destination): sent, received, round trips in milliseconds."""
    return pd.DataFrame([ping(ns, dst, count=count, timeout=timeout) for ns, dst in pairs], columns=PING_COLUMNS)


def ping_check(plan: Plan, pairs: list[tuple[str, str]], *, count: int = 3, timeout: float = 1.0,
               name: str = "ping") -> pd.DataFrame:
    """:func:`ping_table` as a check of ``plan``: run when acting (the lab exists), an empty table in a dry run."""
    table = plan.check(f"{name}-{len(plan.rows)}", f"{count} ping(s) for {', '.join(f'{ns} → {dst}' for ns, dst in pairs)}",
                       lambda: ping_table(pairs, count=count, timeout=timeout))
    return table if table is not None else pd.DataFrame(columns=PING_COLUMNS)


def backend_numbers(lab: NetLab, nodes: list[topology.LabNode], backend: str, *, count: int) -> dict:
    """Round trips and path MTU between the first two pods as the lab is built now."""
    a, b = nodes[0], nodes[1]
    result = ping(a.pod_ns, b.pod_ip, count=count)
    payload = largest_payload(a.pod_ns, b.pod_ip)
    node_links = links(a.ns).set_index("device")
    return {"backend": backend, "pings": f"{result['received']}/{result['sent']}",
            "rtt_min_ms": result["rtt_min_ms"], "rtt_avg_ms": result["rtt_avg_ms"],
            "rtt_max_ms": result["rtt_max_ms"],
            "largest payload (DF)": payload, "path MTU": payload + 28,
            "pod eth0 MTU": int(links(a.pod_ns).set_index("device").loc["eth0", "mtu"]),
            "flannel.1 MTU": int(node_links.loc["flannel.1", "mtu"]) if "flannel.1" in node_links.index else None,
            "underlay MTU": int(node_links.loc[topology.UNDERLAY_DEV, "mtu"])}


COMPARISON_COLUMNS = ["backend", "pings", "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "largest payload (DF)",
                      "path MTU", "pod eth0 MTU", "flannel.1 MTU", "underlay MTU"]


def compare_backends(plan: Plan, lab: NetLab, nodes: list[topology.LabNode], *, count: int = 20,
                     backends: tuple[str, ...] = ("vxlan", "host-gw")) -> pd.DataFrame:
    """Build the lab with each backend in turn (from nothing), measure, and return one row per backend
    (an empty table in a dry run, where nothing is built).

    Everything runs in one call so the numbers share the same machine load; they are measurements,
    not guarantees: on an idle machine host-gw saves the encapsulation, on a busy one noise dominates."""
    rows = []
    for backend in backends:
        lab.rebuild(plan)
        lab.apply(plan, topology.underlay(lab, nodes) + topology.flannel(nodes, backend))
        measured = plan.check(f"measure-{backend}", f"{count} pings and the path MTU from pod1 to pod2 over {backend}",
                              lambda backend=backend: backend_numbers(lab, nodes, backend, count=count))
        rows += [measured] if measured is not None else []
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def plot_comparison(table: pd.DataFrame):
    """Round trip (min/avg/max) and path MTU per backend, side by side; returns the Figure."""
    import matplotlib.pyplot as plt
    fig, (rtt, size) = plt.subplots(1, 2, figsize=(9, 3))
    if len(table):
        x = range(len(table))
        rtt.bar(x, table["rtt_avg_ms"], color=["tab:blue", "tab:orange"][:len(table)],
                yerr=[table["rtt_avg_ms"] - table["rtt_min_ms"], table["rtt_max_ms"] - table["rtt_avg_ms"]],
                capsize=6)
        rtt.set_xticks(list(x), table["backend"])
        size.bar(x, table["path MTU"], color=["tab:blue", "tab:orange"][:len(table)])
        size.set_xticks(list(x), table["backend"])
        size.set_ylim(min(table["path MTU"]) - 100, max(table["path MTU"]) + 20)
    rtt.set_ylabel("pod → pod round trip, ms (min/avg/max)")
    size.set_ylabel("path MTU, bytes")
    fig.suptitle("vxlan vs host-gw in the netns lab")
    fig.tight_layout()
    plt.close(fig)   # shown once, as the cell's value
    return fig
