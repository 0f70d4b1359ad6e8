"""Manual scaling (what ``kubectl scale`` does) and a replica timeline followed from a watch.

    scale(plan, "kubebook-scaling", "eladmin-web", 3)        # a step: kubectl scale ... --replicas=3
    wait_replicas(plan, "kubebook-scaling", "eladmin-web", 3)  # a wait step: the timeline, None in a dry run
    follow_replicas(api, "kubebook-scaling", "eladmin-web", 3) # the same watch without a plan (widgets, tests)

``kubectl scale deployment eladmin-web --replicas=3`` writes the ``/scale`` subresource, which
carries only ``spec.replicas`` (the HPA controller writes the same subresource). kubebook changes
that same field through the plan: a merge patch conditional on the resourceVersion it read, after
a backup when the Deployment existed before the run, so clean-up puts the count back. The
Deployment controller then creates or deletes Pods through a ReplicaSet; the timeline follows the
Deployment's status until the ready count matches.
"""
from __future__ import annotations

import re
import time
from typing import Callable

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import diagnose
from ..errors import KubebookError
from ..objects import Ref
from ..plan import Plan
from ..waits import wait_for

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
MAX_REPLICAS = 1000  # a guard against a typo (30 → 300): the lab runs nothing, a real cluster would try
TIMELINE_COLUMNS = ["seconds", "desired", "current", "updated", "ready", "available"]


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise KubebookError(f"{what} {name!r} is not a valid Kubernetes object name (lower case, digits, '-', '.')")
    return name


def check_replicas(replicas: int, what: str = "replicas") -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS:
        raise KubebookError(f"{what} must be a whole number from 0 to {MAX_REPLICAS}, got {replicas!r}")
    return replicas


def read_scale(api: client.ApiClient, namespace: str, name: str) -> dict:
    """The Deployment's scale subresource: ``spec.replicas``, ``status.replicas`` and the Pod selector."""
    scale_ = client.AppsV1Api(api).read_namespaced_deployment_scale(name, namespace)
    return {"deployment": f"{namespace}/{name}", "spec.replicas": scale_.spec.replicas,
            "status.replicas": scale_.status.replicas, "selector": scale_.status.selector}


def current(api: client.ApiClient, namespace: str, name: str) -> pd.DataFrame:
    """:func:`read_scale` as a one-row table, with the HPA that targets the Deployment (``not found`` if missing)."""
    try:
        row = read_scale(api, namespace, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        row = {"deployment": f"{namespace}/{name}", "spec.replicas": "not found"}
    return pd.DataFrame([{**row, "autoscaler": autoscaler_of(api, namespace, name) or ""}])


def scale(plan: Plan, namespace: str, name: str, replicas: int) -> str | None:
    """Set the Deployment's replica count, as a step of ``plan``; returns ``"<before> -> <after>"``.

    A Deployment that existed before the run is backed up first and its count put back at clean-up.
    A HorizontalPodAutoscaler targeting the Deployment overrides a manual count at its next sync:
    :func:`current` names it.
    """
    check_replicas(replicas)
    seen: dict[str, int] = {}

    def edit(deployment: dict) -> dict | None:
        seen["before"] = (deployment.get("spec") or {}).get("replicas", 1)
        return None if seen["before"] == replicas else {"spec": {"replicas": replicas}}

    result = plan.modify(Ref("Deployment", name, namespace), edit, step=f"scale-{name}-to-{replicas}",
                         description=f"scale Deployment {namespace}/{name} to {replicas} replicas",
                         command=f"kubectl -n {namespace} scale deployment {name} --replicas={replicas}")
    return None if result is None else f"{seen.get('before')} -> {replicas}"


def autoscaler_of(api: client.ApiClient, namespace: str, name: str) -> str | None:
    """The HorizontalPodAutoscaler whose target is this Deployment, if any (it would undo a manual scale)."""
    for h in client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(namespace).items:
        ref = h.spec.scale_target_ref
        if ref.kind == "Deployment" and ref.name == name:
            return h.metadata.name
    return None


def _row(start: float, d: dict) -> dict:
    status = d.get("status") or {}
    return {"seconds": round(time.monotonic() - start, 2), "desired": d["spec"].get("replicas", 1),
            "current": status.get("replicas", 0), "updated": status.get("updatedReplicas", 0),
            "ready": status.get("readyReplicas", 0), "available": status.get("availableReplicas", 0)}


def replicas_blocked(api: client.ApiClient, namespace: str, name: str) -> Callable[[dict], str | None]:
    """A ``diagnose=`` for replica waits: why the Deployment cannot reach its count as things are
    (it is gone, or :func:`kubebook.diagnose.deployment`: Pods refused, unschedulable, not starting)."""
    def diagnose_(deployments: dict[str, dict]) -> str | None:
        d = deployments.get(name)
        if d is None:
            return f"Deployment {namespace}/{name} does not exist"
        return diagnose.deployment(api, d)

    return diagnose_


def follow_replicas(api: client.ApiClient, namespace: str, name: str, replicas: int | None = None, *,
                    timeout: float = 120, start: float | None = None) -> pd.DataFrame:
    """Follow the Deployment from a watch until ``replicas`` (default: its spec) are ready and no others run.

    Returns the timeline: one row per status change the watch delivered (seconds since ``start``,
    default now; desired/current/updated/ready/available replicas). Stops early with
    :class:`kubebook.waits.WaitBlocked` when the replicas cannot come (see :func:`replicas_blocked`),
    else :class:`kubebook.waits.WaitTimeout` after ``timeout`` seconds.
    """
    check_name(name, "deployment")
    start = time.monotonic() if start is None else start
    rows: list[dict] = []

    def done(deployments: dict[str, dict]) -> bool:
        d = deployments.get(name)
        if d is None:
            return False  # the diagnosis says so
        row = _row(start, d)
        if not rows or {k: v for k, v in row.items() if k != "seconds"} != \
                {k: v for k, v in rows[-1].items() if k != "seconds"}:
            rows.append(row)
        want = row["desired"] if replicas is None else replicas
        observed = (d.get("status") or {}).get("observedGeneration", 0) >= d["metadata"].get("generation", 1)
        return observed and row["desired"] == want and row["ready"] == want and row["current"] == want \
            and row["updated"] == want

    wait_for(api, "deployments", done, namespace=namespace, field_selector=f"metadata.name={name}",
             timeout=timeout, what=f"Deployment {namespace}/{name} with {replicas if replicas is not None else 'all'}"
             " ready replicas", diagnose=replicas_blocked(api, namespace, name))
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def wait_replicas(plan: Plan, namespace: str, name: str, replicas: int | None = None, *,
                  timeout: float = 120) -> pd.DataFrame | None:
    """:func:`follow_replicas` as a wait step of ``plan``: the timeline when acting, None in a dry run."""
    count = "all its" if replicas is None else str(replicas)
    return plan.wait(f"replicas-{name}-{replicas if replicas is not None else 'all'}",
                     f"Deployment {namespace}/{name} has {count} replicas ready (watched; stops early if they "
                     "cannot come)",
                     lambda: follow_replicas(plan.api, namespace, name, replicas, timeout=timeout))


def plot_timeline(timeline: pd.DataFrame | None, *, title: str = "", columns: tuple[str, ...] = ("desired", "ready")):
    """Replica counts over time as steps (a count holds until the next change); the Figure, or None
    when there is nothing to plot (a dry run)."""
    if timeline is None or not len(timeline):
        return None
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3))
    for column in columns:
        if column in timeline:
            ax.step(timeline["seconds"], timeline[column], where="post", label=column, marker="o")
    ax.set_xlabel("seconds")
    ax.set_ylabel("replicas")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="best")
    ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)
    return fig
