"""HorizontalPodAutoscaler (autoscaling/v2): pre-flight, create (``kubectl autoscale``), status, watch.

    check_requests(api, "kubebook-hpa", "eladmin-web")   # containers × requests: can a utilization target work?
    body = hpa_body("eladmin-web", min_replicas=1, max_replicas=3, cpu=80, memory=80)
    apply_hpa(plan, "kubebook-hpa", body)                # a step: created, or backed up and replaced
    wait_active(plan, "kubebook-hpa", "hpa-eladmin-web") # ScalingActive=True, or why it cannot be
    conditions(api, "kubebook-hpa", "hpa-eladmin-web")   # AbleToScale / ScalingActive / ScalingLimited
    simulate_load(plan, target, ...); wait_scaled(plan, target, ...)   # lab: simulated load, the scale-out
    scale_in_without_load(plan, target, ...)             # lab: load off, the window, the scale-in
    watch_hpa(api, ...); follow_scaling(api, ...)        # the same watches without a plan (widgets, tests)

A utilization target is a percentage *of the request*: the controller divides each Pod's usage
(from metrics.k8s.io) by the sum of its containers' requests. A container without a request for
that resource makes the ratio undefined, and the HPA reports ``FailedGetResourceMetric``.
"""
from __future__ import annotations

import time

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from ..errors import KubebookError
from ..objects import Ref
from ..plan import Plan
from ..waits import wait_for
from . import kubelet_sim, scale
from .scale import autoscaler_of, check_name, check_replicas

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


def check_requests(api: client.ApiClient, namespace: str, name: str, *, planned: dict | None = None,
                   resources: tuple[str, ...] = RESOURCES) -> pd.DataFrame:
    """:func:`preflight`, with one line saying whether utilization targets can work."""
    table = preflight(api, namespace, name, resources, planned=planned)
    print("utilization targets can work: every container requests " + " and ".join(resources)
          if preflight_ok(table, resources) else
          "a container lacks a request: a utilization target on that resource cannot work")
    return table


def hpa_body(target: str, *, min_replicas: int = 1, max_replicas: int = 3, cpu: int | None = 80,
             memory: int | None = 80, scale_down_window: int = DEFAULT_SCALE_DOWN_WINDOW,
             name: str = "") -> dict:
    """An autoscaling/v2 HPA for Deployment ``target``, named ``hpa-<target>`` as in the course.

    ``cpu``/``memory`` are average utilization targets in percent of the requests (0 or None: not used).
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
        if percent is None or (percent == 0 and not isinstance(percent, bool)):
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


def apply_hpa(plan: Plan, namespace: str, body: dict) -> str | None:
    """Create the HPA, or replace it (one that existed before is backed up first and put back at clean-up).

    Refused before any step when another HPA already targets the same Deployment: two HPAs on one
    target fight over its replica count (the controller reports ``AmbiguousSelector``).
    """
    name = body["metadata"]["name"]
    spec = body["spec"]
    other = autoscaler_of(plan.api, namespace, spec["scaleTargetRef"]["name"])
    if other and other != name:
        raise KubebookError(f"HPA {namespace}/{other} already scales Deployment {spec['scaleTargetRef']['name']}; "
                            f"a second HPA would fight it: use hpa name {other!r} or remove that HPA first")
    targets = ", ".join(f"{m['resource']['name']} {m['resource']['target']['averageUtilization']}%"
                        for m in spec["metrics"])
    description = (f"apply HPA {namespace}/{name} for Deployment {spec['scaleTargetRef']['name']}: "
                   f"{spec['minReplicas']}..{spec['maxReplicas']} replicas, {targets}, scale-down window "
                   f"{spec['behavior']['scaleDown']['stabilizationWindowSeconds']}s")
    command = f"kubectl -n {namespace} apply -f {name}.yaml   # or: {autoscale_command(namespace, body)}"
    return plan.apply(body, namespace, step=f"apply-{name}", description=description, command=command)


def delete_hpa(plan: Plan, namespace: str, name: str) -> str | None:
    """Delete the HPA if this run created it (one that existed before is kept); the replica count stays."""
    return plan.delete(Ref("HorizontalPodAutoscaler", name, namespace), step=f"delete-{name}",
                       command=f"kubectl -n {namespace} delete hpa {name}")


def _read(api: client.ApiClient, namespace: str, name: str) -> dict | None:
    try:
        v2 = client.AutoscalingV2Api(api)
        return api.sanitize_for_serialization(v2.read_namespaced_horizontal_pod_autoscaler(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


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


SUMMARY_COLUMNS = ["name", "reference", "targets", "min", "max", "current", "desired", "last scale"]


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
    """``kubectl get hpa <name>`` as a one-row table (no row when it does not exist, e.g. in a dry run)."""
    hpa = _read(api, namespace, name)
    return pd.DataFrame([summary(hpa)] if hpa else [], columns=None if hpa else SUMMARY_COLUMNS)


def conditions(api: client.ApiClient, namespace: str, name: str) -> pd.DataFrame:
    """The HPA's conditions: AbleToScale, ScalingActive (are metrics usable?), ScalingLimited (min/max hit)."""
    status = (_read(api, namespace, name) or {}).get("status") or {}
    return pd.DataFrame([{k: c.get(k) for k in ("type", "status", "reason", "message")}
                         for c in status.get("conditions") or []], columns=["type", "status", "reason", "message"])


def hpa_blocked(api: client.ApiClient, namespace: str, name: str, *, needs_metrics: bool = True):
    """A ``diagnose=`` for HPA waits: why the controller cannot reach what the wait expects.

    The HPA is gone; it cannot read or write its target's scale (AbleToScale=False); a container
    has no request for a utilization metric (ScalingActive=False, ``missing request for``); and,
    when the wait needs metrics, no metrics API (:func:`kubebook.autoscaling.metrics.blocked`).
    """
    from .metrics import blocked as metrics_blocked

    def diagnose(hpas: dict[str, dict]) -> str | None:
        hpa = hpas.get(name)
        if hpa is None:
            return f"HPA {namespace}/{name} does not exist"
        return condition_blocked(hpa) or (metrics_blocked(api) if needs_metrics else None)

    return diagnose


def condition_blocked(hpa: dict) -> str | None:
    """What the HPA's own conditions say cannot work: AbleToScale=False (it cannot read or write its
    target's scale), or ScalingActive=False because a container has no request for a utilization metric."""
    for c in (hpa.get("status") or {}).get("conditions") or []:
        if c.get("status") != "False":
            continue
        if c.get("type") == "AbleToScale":
            return f"the HPA cannot scale its target ({c.get('reason')}: {c.get('message')})"
        if c.get("type") == "ScalingActive" and "missing request for" in (c.get("message") or ""):
            return (f"utilization cannot be computed ({c.get('reason')}: {c.get('message')}): give every "
                    "container a request for that resource, or use an AverageValue target")
    return None


def watch_hpa(api: client.ApiClient, namespace: str, name: str, until, *, timeout: float = 120,
              what: str = "HPA condition", diagnose=None, start: float | None = None) -> pd.DataFrame:
    """``kubectl get hpa -w``: follow the HPA from a watch until ``until(hpa_dict)`` is true.

    Returns one row per change of the ``kubectl get hpa`` columns (with seconds since ``start``,
    default now); stops early with :class:`kubebook.waits.WaitBlocked` when ``diagnose`` finds a
    reason, else raises :class:`kubebook.waits.WaitTimeout` after ``timeout`` seconds.
    """
    start = time.monotonic() if start is None else start
    rows: list[dict] = []

    def record(hpas: dict[str, dict]) -> bool:
        hpa = hpas.get(name)
        if hpa is None:
            return False
        row = summary(hpa)
        if not rows or row != {k: v for k, v in rows[-1].items() if k != "seconds"}:
            rows.append({"seconds": round(time.monotonic() - start, 2), **row})
        return until(hpa)

    wait_for(api, "horizontalpodautoscalers", record, namespace=namespace, field_selector=f"metadata.name={name}",
             timeout=timeout, what=f"HPA {namespace}/{name}: {what}",
             diagnose=diagnose or hpa_blocked(api, namespace, name, needs_metrics=False))
    return pd.DataFrame(rows)


def wait_active(plan: Plan, namespace: str, name: str, *, timeout: float = 120) -> pd.DataFrame | None:
    """Wait until the HPA controller computed a replica count from the metrics (ScalingActive=True).

    Stops within seconds when it cannot: no metrics API, a container without a request, no
    access to the target's scale (see :func:`hpa_blocked`)."""
    return plan.wait(f"{name}-active", f"HPA {namespace}/{name} reads the metrics (ScalingActive=True)",
                     lambda: watch_hpa(plan.api, namespace, name, has_condition("ScalingActive", "True"),
                                       timeout=timeout, what="ScalingActive=True",
                                       diagnose=hpa_blocked(plan.api, namespace, name)))


def follow_scaling(api: client.ApiClient, namespace: str, name: str, deployment: str, replicas: int, *,
                   timeout: float = 120, needs_metrics: bool = True) -> pd.DataFrame:
    """The HPA's decision (``desiredReplicas``) from its watch, then the Deployment until that many
    replicas are ready: one timeline (seconds, the HPA's columns, the Deployment's ``ready``).

    Waiting for the Deployment rather than for the HPA's own ``currentReplicas`` saves a sync
    period (the controller refreshes its status only at the next one)."""
    start = time.monotonic()
    before = client.AppsV1Api(api).read_namespaced_deployment_status(deployment, namespace).status
    decided = watch_hpa(api, namespace, name, lambda h: (h.get("status") or {}).get("desiredReplicas") == replicas,
                        timeout=timeout, what=f"desiredReplicas={replicas}", start=start,
                        diagnose=hpa_blocked(api, namespace, name, needs_metrics=needs_metrics))
    left = max(1.0, timeout - (time.monotonic() - start))
    ready = scale.follow_replicas(api, namespace, deployment, replicas, timeout=left, start=start)
    return merge_timeline(decided, ready, before.ready_replicas or 0)


def merge_timeline(decided: pd.DataFrame, ready: pd.DataFrame, ready_before: int) -> pd.DataFrame:
    """One timeline from the HPA's rows and the Deployment's (``seconds``, ``ready``): each row holds
    the latest value of every column at its time; rows that change nothing are dropped."""
    rows = pd.concat([decided, ready[["seconds", "ready"]]], ignore_index=True).sort_values("seconds", kind="stable")
    rows = rows.ffill()
    rows["ready"] = rows["ready"].fillna(ready_before)
    for column in ("min", "max", "current", "desired", "ready"):
        if column in rows:
            rows[column] = rows[column].astype("Int64")
    shown = rows.drop(columns="seconds").astype(object).fillna("-").astype(str)
    changed = shown.ne(shown.shift()).any(axis=1)
    return rows[changed].reset_index(drop=True)


def simulate_load(plan: Plan, target, namespace: str, selector: str, *, cpu: str | None = None,
                  memory: str | None = None, limit: int | None = None) -> pd.DataFrame | None:
    """A step that sets the simulated usage of the Pods matching ``selector`` (None removes it); lab only.

    The lab's kubelets are simulated, so "load" is an annotation the simulated resource endpoint
    reads (kwok's usage-from-annotation convention). On another cluster the step is only described:
    generate load against the Service instead (the course uses ``ab -n 100000 -c 1000``).
    Pods created later (by a scale-out) start without the annotation, i.e. idle — as new replicas
    behind a Service share the load and lower the average. ``limit`` loads only the first Pods (by name).
    """
    for value in (cpu, memory):
        if value is not None:
            parse_quantity(value)  # rejects a malformed quantity before any Pod is touched
    what = f"cpu {cpu}" + (f", memory {memory}" if memory else "") if cpu or memory else "no load (idle)"
    pods = f"the first {limit} Pod(s)" if limit else "every Pod"
    if getattr(target, "lab", None) is None:
        return plan.step(f"load-{cpu or 'off'}", f"{'generate' if cpu else 'stop'} load on {pods} {selector} "
                         f"in {namespace} yourself (kubebook simulates load on a kubebook lab only)", None,
                         command="ab -n 100000 -c 1000 http://<service>/")

    def act() -> pd.DataFrame:
        core = client.CoreV1Api(plan.api)
        patch = {"metadata": {"annotations": {LOAD_ANNOTATIONS["cpu"]: cpu, LOAD_ANNOTATIONS["memory"]: memory}}}
        rows = []
        listed = sorted(core.list_namespaced_pod(namespace, label_selector=selector).items,
                        key=lambda p: p.metadata.name)
        for pod in listed[:limit]:
            core.patch_namespaced_pod(pod.metadata.name, namespace, patch)
            rows.append({"pod": pod.metadata.name, "simulated cpu": cpu or "idle", "simulated memory": memory or "idle"})
        return pd.DataFrame(rows, columns=["pod", "simulated cpu", "simulated memory"])

    return plan.step(f"load-{cpu or 'off'}", f"simulate {what} on {pods} {selector} in {namespace} "
                     f"(annotations {LOAD_ANNOTATIONS['cpu']}/-memory, read by the lab's kubelet stand-in)", act,
                     command=f"kubectl -n {namespace} annotate pods -l {selector} "
                             f"{LOAD_ANNOTATIONS['cpu']}={cpu or '-'} --overwrite",
                     touches=[Ref("Namespace", namespace)])


def wait_scaled(plan: Plan, target, namespace: str, name: str, deployment: str, replicas: int, *,
                timeout: float = 180, what: str = "") -> pd.DataFrame | None:
    """Follow the HPA until it decided on ``replicas`` and the Deployment has them ready (the
    timeline; see :func:`follow_scaling`). On a kubebook lab only, where the load is simulated:
    elsewhere the step is described (watch it while you generate load)."""
    description = f"HPA {namespace}/{name} {what or f'scales to {replicas}'} and the Deployment's replicas are ready"
    if getattr(target, "lab", None) is None:
        return plan.step(f"{name}-{replicas}", f"watch {description} while you generate load", None,
                         command=f"kubectl -n {namespace} get hpa {name} -w")
    return plan.wait(f"{name}-{replicas}", description,
                     lambda: follow_scaling(plan.api, namespace, name, deployment, replicas, timeout=timeout))


def scale_in_without_load(plan: Plan, target, namespace: str, deployment: str, name: str, *, replicas: int,
                          timeout: float = 180) -> pd.DataFrame | None:
    """Remove the simulated load, then follow the HPA in to ``replicas`` once its stabilization window has passed.

    The replicas a scale-out made need their own metrics first (two scrapes): until then the HPA
    counts a Pod without metrics as fully loaded when it considers scaling in, which would hold the
    replicas longer than the window. So on a lab the step waits for every Pod's metrics first."""
    selector = f"app={deployment}"
    if getattr(target, "lab", None) is not None:
        from .metrics import wait_pod_metrics
        wait_pod_metrics(plan, namespace, selector, timeout=timeout)
    simulate_load(plan, target, namespace, selector, cpu=None)
    return wait_scaled(plan, target, namespace, name, deployment, replicas, timeout=timeout,
                       what=f"scales in to {replicas} after the stabilization window")


def scale_past_max(plan: Plan, namespace: str, deployment: str, *, replicas: int, max_replicas: int,
                   timeout: float = 120) -> pd.DataFrame | None:
    """Scale by hand above ``max_replicas`` and follow the Deployment back to it: the HPA owns the count.

    No metrics are needed for this correction. With ``replicas`` not above the maximum the step
    is only described. Returns the Deployment's timeline."""
    if replicas <= max_replicas:
        return plan.step(f"scale-{deployment}-past-max", f"scale past maxReplicas: skipped ({replicas} is not "
                         f"above {max_replicas})", None)
    scale.scale(plan, namespace, deployment, replicas)
    return scale.wait_replicas(plan, namespace, deployment, max_replicas, timeout=timeout)


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


def behavior(api: client.ApiClient, namespace: str, name: str, *, planned: dict | None = None) -> pd.DataFrame:
    """The HPA's scale-up and scale-down behavior as the API stored it (defaults filled in); the
    ``planned`` body's while the HPA does not exist (a dry run).

    Per direction: the stabilization window, how policies combine (``Max``: the one allowing the
    biggest change wins) and each policy (at most ``value`` Pods or percent per ``periodSeconds``).
    """
    hpa = _read(api, namespace, name) or planned
    if hpa is None:
        raise KubebookError(f"HPA {namespace}/{name} not found")
    return behavior_of(hpa["spec"].get("behavior") or {})


def behavior_of(behavior_spec: dict) -> pd.DataFrame:
    rows = []
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior_spec.get(direction) or {}
        policies = "; ".join(f"{p['value']} {'Pods' if p['type'] == 'Pods' else '%'} per {p['periodSeconds']}s"
                             for p in rules.get("policies") or [])
        rows.append({"direction": direction, "stabilization window (s)": rules.get("stabilizationWindowSeconds"),
                     "select policy": rules.get("selectPolicy"), "policies": policies})
    return pd.DataFrame(rows)


LOAD_ANNOTATIONS = {"cpu": kubelet_sim.CPU_ANNOTATION, "memory": kubelet_sim.MEMORY_ANNOTATION}


def plot_hpa(timeline: pd.DataFrame | None, *, title: str = ""):
    """The HPA's desired replicas and the Deployment's ready ones (steps; the HPA's own ``current``
    where there is no ``ready`` column) and the metrics' utilization (lines, right axis). None when
    there is nothing to plot (a dry run)."""
    if timeline is None or not len(timeline):
        return None
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.2))
    second = "ready" if "ready" in timeline else "current"
    for column, color in (("desired", "C0"), (second, "C1")):
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
