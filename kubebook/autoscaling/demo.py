"""The demo workload of the scaling runbooks: a Deployment (the course's ``eladmin-web``) in a kubebook namespace.

    ensure_demo(plan, "kubebook-hpa", "eladmin-web", requests={"cpu": "100m", "memory": "128Mi"})

It is created only when missing; one that already exists (the course's application on a real
cluster) is kept, and backed up before the run scales it, so clean-up puts its replica count
back. Clean-up (``plan.cleanup()``) removes only what the run created.
"""
from __future__ import annotations

from ..objects import Ref, objects
from ..plan import Plan
from ..scheduling import workloads
from .scale import check_replicas, wait_replicas

DEFAULT_REQUESTS = {"cpu": "100m", "memory": "128Mi"}


def requests(cpu: str, memory: str, wanted: bool = True) -> dict:
    """The container requests of the demo Deployment (``{}`` when not ``wanted``: the HPA pre-flight then fails)."""
    return {"cpu": cpu, "memory": memory} if wanted else {}


def demo_deployment(name: str, *, replicas: int = 1, requests: dict | None = None) -> dict:
    """The Deployment :func:`ensure_demo` creates: one container with ``requests`` (default 100m CPU, 128Mi)."""
    return workloads.deployment(name, replicas=replicas, requests=DEFAULT_REQUESTS if requests is None else requests)


def ensure_demo(plan: Plan, namespace: str, name: str, *, replicas: int = 1, requests: dict | None = None,
                timeout: float = 120) -> None:
    """Steps: the namespace and the Deployment, each created if missing (kept if it exists), then a
    wait until its replicas are ready.

    A Deployment that existed before the run is backed up now (its replica count is what later
    steps, or an HPA, change) and put back at clean-up.
    """
    check_replicas(replicas)
    workloads.ensure_namespace(plan, namespace)
    ref = Ref("Deployment", name, namespace)
    existing = objects(plan.api).get(ref)
    if existing is None or plan.record.owns(ref, existing):
        plan.create(demo_deployment(name, replicas=replicas, requests=requests), namespace, step=f"deployment-{name}",
                    command=f"kubectl -n {namespace} create deployment {name} --image={workloads.IMAGE} "
                            f"--replicas={replicas}")
    else:
        # a merge patch that sets the count it already has: nothing changes, but the backup is taken
        plan.modify(ref, lambda d: {"spec": {"replicas": (d.get("spec") or {}).get("replicas", 1)}},
                    step=f"keep-{name}", description=f"keep Deployment {namespace}/{name} (it exists): back it up "
                    "so clean-up puts its replica count back", command=f"kubectl -n {namespace} get deployment "
                    f"{name} -o yaml > {name}.yaml")
    wait_replicas(plan, namespace, name, timeout=timeout)
