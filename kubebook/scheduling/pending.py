"""Why a Pod is Pending, from live objects, beside what the scheduler itself said.

    why = why_pending(api, "luffy", "eladmin-web-5d9c...-x2x7q")
    why.table          # nodes × checks, each failing cell saying why
    why.side_by_side() # our summary | the PodScheduled condition | the last FailedScheduling event
    pending_pods(api)  # every Pending Pod, one line each
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from kubernetes import client

from .explain import Snapshot, check_rows, explain, explain_all, scheduler_summary, summary, unexplained_features


@dataclass
class WhyPending:
    pod: dict
    table: pd.DataFrame
    ours: str
    condition: dict
    event: str
    caveats: list[str]

    @property
    def fits(self) -> set[str]:
        return set(self.table.loc[self.table["fits"], "node"])

    @property
    def node(self) -> str:
        return (self.pod.get("spec") or {}).get("nodeName") or ""

    @property
    def scheduler_message(self) -> str:
        return self.condition.get("message") or self.event

    @property
    def agrees(self) -> bool | None:
        """Does our verdict agree with the scheduler's? None while it has not decided yet.

        Pending and judged unschedulable ⇔ no node fits; bound ⇔ its node is among those that fit.
        """
        if self.node:
            return self.node in self.fits
        if self.condition.get("reason") == "Unschedulable":
            return not self.fits
        return None

    def side_by_side(self) -> pd.DataFrame:
        rows = [{"source": "kubebook (recomputed filters)", "says": self.ours},
                {"source": "PodScheduled condition",
                 "says": f"{self.condition.get('status', '')} {self.condition.get('reason', '')}: "
                         f"{self.condition.get('message', '')}".strip(" :")},
                {"source": "last FailedScheduling event", "says": self.event or "(none)"},
                {"source": "verdicts agree", "says": {True: "yes", False: "NO", None: "scheduler has not decided"}[
                    self.agrees]}]
        rows += [{"source": "not recomputed", "says": c} for c in self.caveats]
        return pd.DataFrame(rows)


def _raw_pod(api, namespace: str, name: str) -> dict:
    return api.sanitize_for_serialization(client.CoreV1Api(api).read_namespaced_pod(name, namespace))


def last_failed_scheduling(api, namespace: str, name: str) -> str:
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},reason=FailedScheduling").items
    if not events:
        return ""
    def seen(e):  # events the scheduler records through events.k8s.io carry eventTime and a series
        return (e.series and e.series.last_observed_time) or e.last_timestamp or e.event_time or \
            e.metadata.creation_timestamp

    latest = max(events, key=seen)
    return latest.message or ""


def why_pending(api, namespace: str, name: str = "", *, selector: str = "",
                snapshot: Snapshot | None = None) -> WhyPending:
    """Explain one Pod (Pending or not: for a bound Pod it answers "why not the other nodes").

    Without ``name``, the first Pending Pod in ``namespace`` (matching ``selector``), else the
    first Pod that matches.
    """
    snap = snapshot or Snapshot.take(api)
    name = name or first_pod(api, namespace, selector)
    pod = _raw_pod(api, namespace, name)
    rows = check_rows(pod, snap)
    condition = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"),
                     {})
    return WhyPending(pod=pod, table=explain(pod, snap), ours=summary(rows), condition=condition,
                      event=last_failed_scheduling(api, namespace, name), caveats=unexplained_features(pod))


def pending_pods(api, *, namespace: str = "", snapshot: Snapshot | None = None) -> pd.DataFrame:
    """Every Pending Pod (in ``namespace``, or all): nodes that fit, our summary, the scheduler's."""
    snap = snapshot or Snapshot.take(api)
    pods = [p for p in snap.pending() if not namespace or p["metadata"].get("namespace") == namespace]
    table = explain_all(snap, pods)
    said = {(p["metadata"].get("namespace"), p["metadata"]["name"]):
            next((c.get("message", "") for c in (p.get("status") or {}).get("conditions") or []
                  if c.get("type") == "PodScheduled"), "") for p in pods}
    table["scheduler says"] = [scheduler_summary(said[(ns, n)]) if said[(ns, n)] else "(not tried yet)"
                               for ns, n in zip(table["namespace"], table["pod"])]
    return table


def pending_in(api, namespace: str, selector: str = "") -> list[str]:
    """Names of the Pending Pods in ``namespace`` (optionally matching a label selector)."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector or None).items
    return sorted(p.metadata.name for p in pods if not p.spec.node_name and not p.metadata.deletion_timestamp)


def first_pod(api, namespace: str, selector: str = "") -> str:
    """The first Pending Pod in ``namespace`` matching ``selector``, else the first matching Pod."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector or None).items
    live = sorted((p for p in pods if not p.metadata.deletion_timestamp), key=lambda p: p.metadata.name)
    waiting = [p for p in live if not p.spec.node_name]
    if not live:
        from ..errors import KubebookError
        raise KubebookError(f"no Pod in namespace {namespace}" + (f" matching {selector}" if selector else "")
                            + "; pass pod=<name>")
    return (waiting or live)[0].metadata.name
