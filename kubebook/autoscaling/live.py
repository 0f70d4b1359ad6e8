"""The HPA as it changes: its replicas and utilization over time, and the load that moves them.

    history = History()
    history.record(hpa_dict)          # one row per change of the `kubectl get hpa` columns
    history.frame()                   # seconds, desired, current, cpu %, memory %, ...

    plan = Plan(target=namespace, kind="namespace", also=scope(target), confirm=..., cluster=target)
    started = setup(plan, target, namespace, "eladmin-web", body)   # demo Deployment, metrics, HPA
    set_load(plan, target, namespace, "eladmin-web", "250m")         # simulated CPU per Pod (lab)
    clean_up(plan, target, started)                                  # what setup made, nothing else

The live chart in ``widgets/hpa_chart.py`` follows the HPA by watch and draws
:func:`kubebook.autoscaling.hpa.plot_hpa` from this history. Objects are made by plan steps that
create what is missing and keep what exists (a Deployment that runs already is the one the HPA
scales; an HPA of that name is backed up, replaced and put back at clean-up).
"""
from __future__ import annotations

import time

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..plan import Plan
from . import demo, hpa, metrics


class History:
    """Rows of :func:`hpa.summary`, one per change, with seconds since the first."""

    def __init__(self):
        self.rows: list[dict] = []
        self._started = time.monotonic()

    def record(self, hpa_object: dict) -> bool:
        """Add a row if the HPA's columns changed; True when one was added."""
        row = hpa.summary(hpa_object)
        if self.rows and {k: v for k, v in self.rows[-1].items() if k != "seconds"} == row:
            return False
        self.rows.append({"seconds": round(time.monotonic() - self._started, 1), **row})
        return True

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def read(api, namespace: str, name: str) -> dict | None:
    """The HPA as a dict, or None when there is none."""
    try:
        return api.sanitize_for_serialization(
            client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def scope(target) -> list[str]:
    """What the set-up touches besides its namespace: on a lab, the APIService the metrics add-on registers."""
    return [f"apiservice/{metrics.APISERVICE}"] if getattr(target, "lab", None) is not None else []


def setup(plan: Plan, target, namespace: str, name: str, body: dict, *, requests: dict | None = None) -> metrics.Addon:
    """Steps: the namespace and the demo Deployment when missing (kept as they are otherwise), the
    metrics API (on a lab its add-on, if it is not served yet) and the HPA ``body``. Returns what the
    metrics step did, for :func:`clean_up` to undo."""
    plan.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                step=f"namespace-{namespace}", command=f"kubectl create namespace {namespace}")
    deployment = demo.demo_deployment(name, requests=requests)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    plan.create(deployment, namespace, step=f"deployment-{name}",
                command=f"kubectl -n {namespace} create deployment {name} --image={container['image']}  "
                        f"# requests {(container.get('resources') or {}).get('requests') or 'none'}")
    addon = metrics.ensure_metrics(plan, target)
    spec = body["spec"]
    targets = ", ".join(f"{m['resource']['name']} {m['resource']['target']['averageUtilization']}%"
                        for m in spec["metrics"])
    plan.apply(body, namespace, step=f"apply-{body['metadata']['name']}",
               description=f"apply HPA {namespace}/{body['metadata']['name']} for Deployment "
                           f"{spec['scaleTargetRef']['name']}: {spec['minReplicas']}..{spec['maxReplicas']} replicas, "
                           f"{targets}, scale-down window {spec['behavior']['scaleDown']['stabilizationWindowSeconds']}s",
               command=f"kubectl -n {namespace} apply -f {body['metadata']['name']}.yaml   "
                       f"# or: {hpa.autoscale_command(namespace, body)}")
    return addon


def set_load(plan: Plan, target, namespace: str, name: str, cpu: str):
    """Every current Pod of ``name`` reports ``cpu`` of usage ("" or "idle": none); the lab's kubelets
    are simulated, so load is an annotation they read (:func:`hpa.simulate_load`, lab only)."""
    return hpa.simulate_load(plan, target, namespace, f"app={name}", cpu=None if cpu in ("", "idle") else cpu)


def clean_up(plan: Plan, target, addon: metrics.Addon) -> None:
    """Undo :func:`setup`: delete the HPA, Deployment and namespace if this run created them, put back
    an HPA it replaced, and stop the lab's metrics add-on if the set-up started it."""
    plan.cleanup(within_scope=True)
    metrics.stop_if_started(plan, addon, target)
