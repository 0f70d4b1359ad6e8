"""The course's demo workload for the scaling runbooks: Deployment ``eladmin-web`` in ``luffy``.

The runbooks create it only when it is missing and remove only what they created, so on a
cluster where the course's application already runs they scale the real one and leave it there.
"""
from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..plan import Plan
from ..scheduling import workloads
from .scale import check_name, check_replicas

DEFAULT_REQUESTS = {"cpu": "100m", "memory": "128Mi"}


def demo_deployment(name: str, *, replicas: int = 1, requests: dict | None = None) -> dict:
    """The Deployment :func:`ensure_demo` creates: one container with ``requests`` (default 100m CPU, 128Mi)."""
    return workloads.deployment(name, replicas=replicas, requests=DEFAULT_REQUESTS if requests is None else requests)


def exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def ensure_demo(api: client.ApiClient, namespace: str, name: str, *, replicas: int = 1,
                requests: dict | None = None, plan: Plan | None = None) -> dict:
    """Create namespace and Deployment if missing; returns what was created (for :func:`cleanup_demo`).

    ``requests`` are the container's resource requests (``{}``: none, to see the HPA pre-flight fail).
    """
    check_name(namespace, "namespace")
    check_name(name, "deployment")
    check_replicas(replicas)
    created = {"namespace": False, "deployment": False}
    namespace_missing = not _namespace_exists(api, namespace)
    if namespace_missing or not exists(api, namespace, name):
        created["namespace"] = bool(workloads.ensure_namespace(api, namespace, plan=plan))
        body = demo_deployment(name, replicas=replicas, requests=requests)
        workloads.apply_deployment(api, namespace, body, plan=plan)
        created["deployment"] = plan is None or plan.acting
    return created


def _namespace_exists(api: client.ApiClient, namespace: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespace(namespace)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def cleanup_demo(api: client.ApiClient, namespace: str, name: str, created: dict, *, plan: Plan | None = None,
                 when: bool = True) -> None:
    """Delete what :func:`ensure_demo` created (the namespace, or only the Deployment); nothing else."""
    if not when:
        return
    if created.get("namespace"):
        workloads.delete_namespace(api, namespace, plan=plan)
    elif created.get("deployment"):
        workloads.delete_deployment(api, namespace, name, plan=plan)
