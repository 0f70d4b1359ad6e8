"""Manual scaling through the scale subresource (what ``kubectl scale`` does) and a replica timeline.

``kubectl scale deployment eladmin-web --replicas=3`` does not edit the Deployment: it writes the
``/scale`` subresource, which only carries ``spec.replicas`` (the HPA controller writes the same
subresource). The Deployment controller then creates or deletes Pods through a ReplicaSet; the
timeline follows the Deployment's status from a watch until the ready count matches.
"""
from __future__ import annotations

import re
import time

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError
from ..plan import Plan
from ..waits import wait_for

# ``kubectl scale`` accepts these kinds through the same subresource; the library keeps to Deployments
# (the course's workload) so the wait can read one status shape.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
MAX_REPLICAS = 1000  # a guard against a typo (30 → 300): the lab runs nothing, a real cluster would try


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
    scale = client.AppsV1Api(api).read_namespaced_deployment_scale(name, namespace)
    return {"deployment": f"{namespace}/{name}", "spec.replicas": scale.spec.replicas,
            "status.replicas": scale.status.replicas, "selector": scale.status.selector}


def current(api: client.ApiClient, namespace: str, name: str) -> pd.DataFrame:
    """:func:`read_scale` as a one-row table, with the HPA that targets the Deployment (``not found`` if missing)."""
    try:
        row = read_scale(api, namespace, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        row = {"deployment": f"{namespace}/{name}", "spec.replicas": "not found"}
    return pd.DataFrame([{**row, "autoscaler": autoscaler_of(api, namespace, name) or ""}])


def scale(api: client.ApiClient, namespace: str, name: str, replicas: int, *, plan: Plan | None = None) -> str | None:
    """Set the Deployment's replica count through ``/scale``; returns ``"<before> -> <after>"``.

    Only ``spec.replicas`` changes, so nothing else in the Deployment needs a backup; the previous
    count is in the result (scale back with it). A HorizontalPodAutoscaler targeting the Deployment
    overrides a manual count at its next sync: check :func:`autoscaler_of` first.
    """
    check_name(namespace, "namespace")
    check_name(name, "deployment")
    check_replicas(replicas)

    def act() -> str:
        apps = client.AppsV1Api(api)
        before = apps.read_namespaced_deployment_scale(name, namespace).spec.replicas
        apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})
        return f"{before} -> {replicas}"

    description = f"scale Deployment {namespace}/{name} to {replicas} replicas (scale subresource)"
    command = f"kubectl -n {namespace} scale deployment {name} --replicas={replicas}"
    if plan is None:
        return act()
    return plan.step(f"scale-{name}", description, act, command=command)


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


def wait_replicas(api: client.ApiClient, namespace: str, name: str, replicas: int | None = None, *,
                  timeout: float = 120) -> pd.DataFrame:
    """Follow the Deployment from a watch until ``replicas`` (default: its spec) are ready and no others run.

    Returns the timeline: one row per status change the watch delivered (seconds since the wait
    started, desired/current/updated/ready/available replicas). Raises
    :class:`kubebook.waits.WaitTimeout` if the count is not reached within ``timeout`` seconds.
    """
    check_name(name, "deployment")
    start = time.monotonic()
    rows: list[dict] = []

    def done(deployments: dict[str, dict]) -> bool:
        d = deployments.get(name)
        if d is None:
            raise KubebookError(f"Deployment {namespace}/{name} not found")
        row = _row(start, d)
        if not rows or {k: v for k, v in row.items() if k != "seconds"} != \
                {k: v for k, v in rows[-1].items() if k != "seconds"}:
            rows.append(row)
        want = row["desired"] if replicas is None else replicas
        observed = (d.get("status") or {}).get("observedGeneration", 0) >= d["metadata"].get("generation", 1)
        return observed and row["desired"] == want and row["ready"] == want and row["current"] == want \
            and row["updated"] == want

    wait_for(api, "deployments", done, namespace=namespace, field_selector=f"metadata.name={name}",
             timeout=timeout, what=f"Deployment {namespace}/{name} with {replicas} ready replicas")
    return pd.DataFrame(rows, columns=["seconds", "desired", "current", "updated", "ready", "available"])


def plot_timeline(timeline: pd.DataFrame, *, title: str = "", columns: tuple[str, ...] = ("desired", "ready")):
    """Replica counts over time as steps (a count holds until the next change); returns the Figure."""
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
