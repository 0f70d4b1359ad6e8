"""HorizontalPodAutoscaler (autoscaling/v2): pre-flight, create (``kubectl autoscale``), status, watch.

    preflight(api, "luffy", "eladmin-web")          # containers × requests: can a utilization target work?
    body = hpa_body("eladmin-web", min_replicas=1, max_replicas=3, cpu=80, memory=80)
    apply_hpa(api, "luffy", body, plan=plan)
    conditions(api, "luffy", "hpa-eladmin-web")      # AbleToScale / ScalingActive / ScalingLimited

A utilization target is a percentage *of the request*: the controller divides each Pod's usage
(from metrics.k8s.io) by the sum of its containers' requests. A container without a request for
that resource makes the ratio undefined, and the HPA reports ``FailedGetResourceMetric``.
"""
from __future__ import annotations

import time

import pandas as pd
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from ..errors import KubebookError
from ..plan import Plan
from ..waits import WaitTimeout
from .scale import check_name, check_replicas

RESOURCES = ("cpu", "memory")
DEFAULT_SCALE_DOWN_WINDOW = 300  # seconds; the controller's default (--horizontal-pod-autoscaler-downscale-stabilization)


def preflight(api: client.ApiClient, namespace: str, name: str, resources: tuple[str, ...] = RESOURCES, *,
              planned: dict | None = None) -> pd.DataFrame:
    """One row per container of the Deployment's Pod template: its requests and whether each target can work.

    If the Deployment does not exist yet, ``planned`` (the body a dry run would create) is checked instead.
    """
    try:
        d = api.sanitize_for_serialization(client.AppsV1Api(api).read_namespaced_deployment(name, namespace))
        source = "live"
    except ApiException as exc:
        if exc.status != 404 or planned is None:
            raise
        d, source = planned, "planned"
    return preflight_of(d, resources, source=source)


def preflight_of(deployment: dict, resources: tuple[str, ...] = RESOURCES, *, source: str = "") -> pd.DataFrame:
    """:func:`preflight` for a Deployment given as a dict (live, planned or recorded)."""
    rows = []
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        requests = (c.get("resources") or {}).get("requests") or {}
        row = {"source": source, "container": c["name"]}
        for r in resources:
            row[f"{r} request"] = requests.get(r, "")
            row[f"{r} utilization possible"] = r in requests
        rows.append(row)
    return pd.DataFrame(rows)


def preflight_ok(table: pd.DataFrame, resources: tuple[str, ...] = RESOURCES) -> bool:
    return bool(len(table)) and all(table[f"{r} utilization possible"].all() for r in resources)


def hpa_body(target: str, *, min_replicas: int = 1, max_replicas: int = 3, cpu: int | None = 80,
             memory: int | None = 80, scale_down_window: int = DEFAULT_SCALE_DOWN_WINDOW,
             name: str = "") -> dict:
    """An autoscaling/v2 HPA for Deployment ``target``, named ``hpa-<target>`` as in the course.

    ``cpu``/``memory`` are average utilization targets in percent of the requests (None: not used).
    ``scale_down_window`` is the scale-down stabilization window: the controller scales down only to
    the highest replica count it recommended during that many seconds, so a short dip in load does
    not remove Pods that the next peak needs again.
    """
    check_name(target, "deployment")
    check_replicas(min_replicas, "min_replicas")
    check_replicas(max_replicas, "max_replicas")
    if min_replicas < 1 or max_replicas < min_replicas:
        raise KubebookError(f"need 1 <= min_replicas <= max_replicas, got min {min_replicas}, max {max_replicas}")
    metrics = []
    for resource, percent in (("memory", memory), ("cpu", cpu)):
        if percent is None:
            continue
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 1000:
            raise KubebookError(f"{resource} target must be a percentage from 1 to 1000, got {percent!r}")
        metrics.append({"type": "Resource", "resource": {
            "name": resource, "target": {"type": "Utilization", "averageUtilization": percent}}})
    if not metrics:
        raise KubebookError("an HPA needs at least one metric: set cpu or memory")
    if isinstance(scale_down_window, bool) or not isinstance(scale_down_window, int) \
            or not 0 <= scale_down_window <= 3600:
        raise KubebookError(f"scale_down_window must be 0 to 3600 seconds, got {scale_down_window!r}")
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": check_name(name or f"hpa-{target}", "HPA name")},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                     "minReplicas": min_replicas, "maxReplicas": max_replicas, "metrics": metrics,
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": scale_down_window}}}}


def autoscale_command(namespace: str, body: dict) -> str:
    """The ``kubectl autoscale`` line closest to ``body`` (it only knows a CPU target and no behavior)."""
    spec = body["spec"]
    cpu = [m["resource"]["target"]["averageUtilization"] for m in spec["metrics"] if m["resource"]["name"] == "cpu"]
    return (f"kubectl -n {namespace} autoscale deployment {spec['scaleTargetRef']['name']}"
            + (f" --cpu-percent={cpu[0]}" if cpu else "")
            + f" --min={spec['minReplicas']} --max={spec['maxReplicas']}")


def apply_hpa(api: client.ApiClient, namespace: str, body: dict, *, plan: Plan | None = None) -> str | None:
    """Create the HPA, or replace its spec if it exists (same result on every run)."""
    v2 = client.AutoscalingV2Api(api)
    name = body["metadata"]["name"]

    def act() -> str:
        try:
            current = v2.read_namespaced_horizontal_pod_autoscaler(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            v2.create_namespaced_horizontal_pod_autoscaler(namespace, body)
            return "created"
        v2.replace_namespaced_horizontal_pod_autoscaler(name, namespace, {
            **body, "metadata": {**body["metadata"], "resourceVersion": current.metadata.resource_version}})
        return "replaced"

    spec = body["spec"]
    targets = ", ".join(f"{m['resource']['name']} {m['resource']['target']['averageUtilization']}%"
                        for m in spec["metrics"])
    description = (f"apply HPA {namespace}/{name} for Deployment {spec['scaleTargetRef']['name']}: "
                   f"{spec['minReplicas']}..{spec['maxReplicas']} replicas, {targets}, scale-down window "
                   f"{spec['behavior']['scaleDown']['stabilizationWindowSeconds']}s")
    command = f"kubectl -n {namespace} apply -f {name}.yaml   # or: {autoscale_command(namespace, body)}"
    if plan is None:
        return act()
    return plan.step(f"apply-{name}", description, act, command=command)


def delete_hpa(api: client.ApiClient, namespace: str, name: str, *, plan: Plan | None = None) -> str | None:
    def act() -> str:
        try:
            client.AutoscalingV2Api(api).delete_namespaced_horizontal_pod_autoscaler(name, namespace)
            return "deleted"
        except ApiException as exc:
            if exc.status == 404:
                return "already gone"
            raise

    if plan is None:
        return act()
    return plan.step(f"delete-{name}", f"delete HPA {namespace}/{name} (the replica count stays as it is)", act,
                     command=f"kubectl -n {namespace} delete hpa {name}")


def _read(api: client.ApiClient, namespace: str, name: str) -> dict:
    v2 = client.AutoscalingV2Api(api)
    return api.sanitize_for_serialization(v2.read_namespaced_horizontal_pod_autoscaler(name, namespace))


def _targets(hpa: dict) -> str:
    """The TARGETS column of ``kubectl get hpa``: current/target per metric, ``<unknown>`` without data."""
    current = {m["resource"]["name"]: m["resource"]["current"].get("averageUtilization")
               for m in (hpa.get("status") or {}).get("currentMetrics") or [] if m.get("type") == "Resource"}
    parts = []
    for m in hpa["spec"].get("metrics") or []:
        if m.get("type") != "Resource":
            continue
        r = m["resource"]["name"]
        value = current.get(r)
        parts.append(f"{r} {'<unknown>' if value is None else f'{value}%'}/{m['resource']['target'].get('averageUtilization')}%")
    return ", ".join(parts)


def summary(hpa: dict) -> dict:
    """One ``kubectl get hpa`` row from an HPA object (as a dict)."""
    spec, status = hpa["spec"], hpa.get("status") or {}
    utilization = {f"{m['resource']['name']} %": m["resource"]["current"].get("averageUtilization")
                   for m in status.get("currentMetrics") or [] if m.get("type") == "Resource"}
    return {"name": hpa["metadata"]["name"],
            "reference": f"{spec['scaleTargetRef']['kind']}/{spec['scaleTargetRef']['name']}",
            "targets": _targets(hpa), "min": spec.get("minReplicas", 1), "max": spec["maxReplicas"],
            "current": status.get("currentReplicas"), "desired": status.get("desiredReplicas"),
            "last scale": status.get("lastScaleTime"), **utilization}


def get_hpa(api: client.ApiClient, namespace: str, name: str) -> pd.DataFrame:
    """``kubectl get hpa <name>`` as a one-row table."""
    return pd.DataFrame([summary(_read(api, namespace, name))])


def conditions(api: client.ApiClient, namespace: str, name: str) -> pd.DataFrame:
    """The HPA's conditions: AbleToScale, ScalingActive (are metrics usable?), ScalingLimited (min/max hit)."""
    status = _read(api, namespace, name).get("status") or {}
    return pd.DataFrame([{k: c.get(k) for k in ("type", "status", "reason", "message")}
                         for c in status.get("conditions") or []], columns=["type", "status", "reason", "message"])


def watch_hpa(api: client.ApiClient, namespace: str, name: str, until, *, timeout: float = 120,
              what: str = "HPA condition") -> pd.DataFrame:
    """``kubectl get hpa -w``: follow the HPA from a watch until ``until(hpa_dict)`` is true.

    Returns one row per change of the ``kubectl get hpa`` columns (with seconds since the start);
    raises :class:`kubebook.waits.WaitTimeout` after ``timeout`` seconds.
    """
    v2 = client.AutoscalingV2Api(api)
    start = time.monotonic()
    deadline = start + timeout
    rows: list[dict] = []

    def record(hpa: dict) -> bool:
        row = summary(hpa)
        if not rows or {k: v for k, v in row.items()} != {k: v for k, v in rows[-1].items() if k != "seconds"}:
            rows.append({"seconds": round(time.monotonic() - start, 2), **row})
        return until(hpa)

    selector = f"metadata.name={name}"
    while True:
        listing = v2.list_namespaced_horizontal_pod_autoscaler(namespace, field_selector=selector)
        if not listing.items:
            raise KubebookError(f"HPA {namespace}/{name} not found")
        if record(api.sanitize_for_serialization(listing.items[0])):
            return pd.DataFrame(rows)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last: {rows[-1]}")
        w = watch.Watch()
        try:
            for event in w.stream(v2.list_namespaced_horizontal_pod_autoscaler, namespace,
                                  field_selector=selector, resource_version=listing.metadata.resource_version,
                                  timeout_seconds=max(1, int(remaining))):
                if event["type"] == "DELETED":
                    raise KubebookError(f"HPA {namespace}/{name} was deleted while watching")
                if event["type"] in ("ADDED", "MODIFIED") and record(api.sanitize_for_serialization(event["object"])):
                    return pd.DataFrame(rows)
                if time.monotonic() >= deadline:
                    break
        except ApiException as exc:
            if exc.status != 410:  # resource version too old: list again
                raise
        finally:
            w.stop()


def has_condition(type_: str, status: str = "", reason: str = ""):
    """A predicate for :func:`watch_hpa`: the HPA reports condition ``type_`` (with ``status``, ``reason`` if given)."""
    def check(hpa: dict) -> bool:
        return any(c.get("type") == type_ and (not status or c.get("status") == status) and (not reason or c.get("reason") == reason)
                   for c in (hpa.get("status") or {}).get("conditions") or [])
    return check


def replicas_at(count: int):
    """A predicate for :func:`watch_hpa`: the HPA saw ``count`` current replicas and wants ``count``."""
    return lambda hpa: (hpa.get("status") or {}).get("currentReplicas") == count and \
        (hpa.get("status") or {}).get("desiredReplicas") == count


def behavior(api: client.ApiClient, namespace: str, name: str) -> pd.DataFrame:
    """The HPA's scale-up and scale-down behavior as the API stored it (defaults filled in).

    Per direction: the stabilization window, how policies combine (``Max``: the one allowing the
    biggest change wins) and each policy (at most ``value`` Pods or percent per ``periodSeconds``).
    """
    spec = _read(api, namespace, name)["spec"]
    return behavior_of(spec.get("behavior") or {})


def behavior_of(behavior_spec: dict) -> pd.DataFrame:
    rows = []
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior_spec.get(direction) or {}
        policies = "; ".join(f"{p['value']} {'Pods' if p['type'] == 'Pods' else '%'} per {p['periodSeconds']}s"
                             for p in rules.get("policies") or [])
        rows.append({"direction": direction, "stabilization window (s)": rules.get("stabilizationWindowSeconds"),
                     "select policy": rules.get("selectPolicy"), "policies": policies})
    return pd.DataFrame(rows)


LOAD_ANNOTATIONS = {"cpu": "kwok.x-k8s.io/usage-cpu", "memory": "kwok.x-k8s.io/usage-memory"}


def simulate_load(api: client.ApiClient, namespace: str, selector: str, *, cpu: str | None = None,
                  memory: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Lab only: set the simulated usage of the Pods matching ``selector`` (None removes it).

    The lab's kubelets are simulated, so "load" is an annotation the simulated resource endpoint
    reads (kwok's usage-from-annotation convention). On a real cluster these annotations do nothing:
    generate load against the Service instead (the course uses ``ab -n 100000 -c 1000``).
    Pods created later (by a scale-out) start without the annotation, i.e. idle — as new replicas
    behind a Service share the load and lower the average. ``limit`` loads only the first Pods (by name).
    """
    for value in (cpu, memory):
        if value is not None:
            parse_quantity(value)  # rejects a malformed quantity before any Pod is touched
    core = client.CoreV1Api(api)
    patch = {"metadata": {"annotations": {LOAD_ANNOTATIONS["cpu"]: cpu, LOAD_ANNOTATIONS["memory"]: memory}}}
    rows = []
    pods = sorted(core.list_namespaced_pod(namespace, label_selector=selector).items, key=lambda p: p.metadata.name)
    for pod in pods[:limit]:
        core.patch_namespaced_pod(pod.metadata.name, namespace, patch)
        rows.append({"pod": pod.metadata.name, "simulated cpu": cpu or "idle", "simulated memory": memory or "idle"})
    return pd.DataFrame(rows, columns=["pod", "simulated cpu", "simulated memory"])


def plot_hpa(timeline: pd.DataFrame, *, title: str = ""):
    """Desired and current replicas (steps) and the metrics' utilization (lines, right axis)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for column, color in (("desired", "C0"), ("current", "C1")):
        ax.step(timeline["seconds"], timeline[column].fillna(0), where="post", label=f"{column} replicas",
                marker="o", color=color)
    ax.set_xlabel("seconds")
    ax.set_ylabel("replicas")
    ax.yaxis.get_major_locator().set_params(integer=True)
    right = ax.twinx()
    # a utilization holds until the next sync reports another, hence steps too
    for column, color in zip([c for c in timeline.columns if c.endswith(" %")], ("C2", "C3")):
        right.plot(timeline["seconds"], timeline[column], linestyle="--", drawstyle="steps-post", color=color,
                   label=f"{column[:-2]} utilization %")
    right.set_ylabel("utilization %")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)
    return fig
