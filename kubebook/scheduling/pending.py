"""Why a Pod is Pending, from live objects, beside what the scheduler itself said.

    why = why_pending(api, "luffy", "eladmin-web-5d9c...-x2x7q")
    why.table          # nodes × checks, each failing cell saying why
    why.side_by_side() # our summary | the PodScheduled condition | the last FailedScheduling event
    pending_pods(api)  # every Pending Pod, one line each
    demo(plan, "kubebook-why-pending", when=True)  # a Deployment no node can take, as steps of plan

Reads take an ApiClient and answer the same in a dry run: a namespace with no Pod to explain
gives an empty explanation that says so (a Pod named explicitly must exist).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from kubernetes import client

from ..errors import KubebookError
from ..plan import Plan
from . import workloads
from .explain import (CHECKS, Snapshot, check_rows, explain, explain_all, label_selector_matches, scheduler_summary,
                      summary, unexplained_features)
from .syntax import parse_label_selector


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

    @classmethod
    def nothing(cls, namespace: str, selector: str = "") -> "WhyPending":
        """The answer when there is no Pod to explain (a dry run, before its Pods exist)."""
        what = f"no Pod in namespace {namespace}" + (f" matching {selector}" if selector else "") + \
            " to explain (pass pod=<name>)"
        table = pd.DataFrame(columns=["node", "fits", *CHECKS, "scheduler reason", "preferred weight",
                                      "PreferNoSchedule"])
        return cls(pod={}, table=table, ours=what, condition={}, event="", caveats=[])


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
    name = name or first_pod(api, namespace, selector)
    if not name:
        return WhyPending.nothing(namespace, selector)
    snap = snapshot or Snapshot.take(api)
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
    """The first Pending Pod in ``namespace`` matching ``selector``, else the first matching Pod ("": none)."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector or None).items
    live = sorted((p for p in pods if not p.metadata.deletion_timestamp), key=lambda p: p.metadata.name)
    waiting = [p for p in live if not p.spec.node_name]
    return (waiting or live)[0].metadata.name if live else ""


DEMO = "pending-demo"


def demo(plan: Plan, namespace: str, *, when: bool = True) -> str | None:
    """Two replicas asking for a node labelled ``disktype=ssd`` and one CPU each: on a fresh lab no
    node has the label, so both wait. Steps of ``plan``; nothing when ``when`` is false."""
    if not when:
        return None
    workloads.ensure_namespace(plan, namespace)
    workloads.apply_deployment(plan, namespace, workloads.deployment(DEMO, replicas=2, node_selector={"disktype": "ssd"},
                                                                     requests={"cpu": "1"}))
    return workloads.settle(plan, namespace, DEMO)


def placement_checked(api, namespace: str, selector: str = "") -> pd.DataFrame:
    """Each selected Pod, its node and the nodes that fit it by kubebook's filters; raises when the
    scheduler bound one to a node we say does not fit, or left one Pending where we say one fits."""
    snap = Snapshot.take(api)
    wanted = parse_label_selector(selector) if selector else None
    rows, wrong = [], []
    for pod in sorted(snap.pods, key=lambda p: p["metadata"]["name"]):
        meta = pod["metadata"]
        if meta.get("namespace") != namespace or meta.get("deletionTimestamp") or \
                (wanted is not None and not label_selector_matches(wanted, meta.get("labels") or {})):
            continue
        fits = sorted(r["node"] for r in check_rows(pod, snap) if r["fits"])
        node = (pod.get("spec") or {}).get("nodeName") or ""
        agrees = node in fits if node else not fits
        rows.append({"pod": meta["name"], "node": node or "<pending>", "nodes that fit": ", ".join(fits),
                     "scheduler agrees": "yes" if agrees else "NO"})
        if not agrees:
            wrong.append(meta["name"])
    if wrong:
        raise KubebookError(f"the scheduler and kubebook's filters disagree on {', '.join(wrong)}")
    return pd.DataFrame(rows, columns=["pod", "node", "nodes that fit", "scheduler agrees"])


def check_placement(plan: Plan, namespace: str, selector: str = "") -> pd.DataFrame | None:
    """:func:`placement_checked` as a check of ``plan`` (after its changes; nothing in a dry run)."""
    return plan.check(f"placement-{namespace}", f"every Pod of {selector or namespace} is where the filters allow",
                      lambda: placement_checked(plan.api, namespace, selector))
