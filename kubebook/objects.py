"""Any Kubernetes object by kind and name, through the official client's dynamic API.

:class:`Ref` names an object (``Ref("Node", "k8s-slave1")``, ``Ref("Deployment", "web", "luffy")``);
:class:`Objects` reads and writes objects of any built-in kind for one ApiClient. The plan's
ownership rules (:mod:`kubebook.ownership`) are written once against this, not per kind.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import paths

# apiVersion of the kinds runbooks touch (an object's own apiVersion wins when it has one)
API_VERSIONS = {
    "Namespace": "v1", "Node": "v1", "Pod": "v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
    "ServiceAccount": "v1", "PersistentVolume": "v1", "PersistentVolumeClaim": "v1", "LimitRange": "v1",
    "ResourceQuota": "v1", "Endpoints": "v1", "Event": "v1",
    "Deployment": "apps/v1", "DaemonSet": "apps/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1",
    "Job": "batch/v1", "CronJob": "batch/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2", "PodDisruptionBudget": "policy/v1",
    "StorageClass": "storage.k8s.io/v1",
    "Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1", "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
    "CertificateSigningRequest": "certificates.k8s.io/v1", "APIService": "apiregistration.k8s.io/v1",
    "Ingress": "networking.k8s.io/v1", "NetworkPolicy": "networking.k8s.io/v1",
    "CustomResourceDefinition": "apiextensions.k8s.io/v1",
}
CLUSTER_SCOPED = {"Namespace", "Node", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
                  "CertificateSigningRequest", "APIService", "CustomResourceDefinition"}
# Fields the server owns: dropped from backups and before re-creating an object from one
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
                 "deletionTimestamp", "deletionGracePeriodSeconds")


@dataclass(frozen=True, order=True)
class Ref:
    """One object: its kind, name and (for namespaced kinds) namespace."""

    kind: str
    name: str
    namespace: str = ""

    @classmethod
    def of(cls, obj: dict, namespace: str = "") -> "Ref":
        meta = obj.get("metadata") or {}
        kind = obj["kind"]
        ns = "" if kind in CLUSTER_SCOPED else (meta.get("namespace") or namespace)
        return cls(kind, meta["name"], ns)

    @property
    def scope(self) -> str:
        """The unit a ``confirm`` names to allow touching this object: its namespace, or itself."""
        if self.namespace:
            return f"namespace/{self.namespace}"
        return f"{self.kind.lower()}/{self.name}"

    @property
    def api_version(self) -> str:
        return API_VERSIONS.get(self.kind, "v1")

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def clean(obj: dict) -> dict:
    """``obj`` without status and server-set metadata: what can be created again."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_FIELDS}
    return {**{k: v for k, v in obj.items() if k not in ("status", "metadata")}, "metadata": meta}


class Objects:
    """Get, create, replace, patch and delete objects of any kind for one ApiClient."""

    def __init__(self, api: Any):
        from kubernetes.dynamic import DynamicClient
        host = api.configuration.host
        cache = paths.cache_root() / "discovery" / (hashlib.sha256(host.encode()).hexdigest()[:16] + ".json")
        cache.parent.mkdir(parents=True, exist_ok=True)
        self.api = api
        self.dynamic = DynamicClient(api, cache_file=str(cache))

    def _resource(self, ref: Ref, api_version: str = ""):
        return self.dynamic.resources.get(api_version=api_version or ref.api_version, kind=ref.kind)

    def get(self, ref: Ref) -> dict | None:
        """The object as a dict, or None when it does not exist."""
        try:
            return self._resource(ref).get(name=ref.name, namespace=ref.namespace or None).to_dict()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, body: dict, namespace: str = "") -> dict:
        ref = Ref.of(body, namespace)
        return self._resource(ref, body.get("apiVersion", "")).create(
            body={"apiVersion": body.get("apiVersion") or ref.api_version, **body},
            namespace=ref.namespace or None).to_dict()

    def replace(self, body: dict, namespace: str = "") -> dict:
        ref = Ref.of(body, namespace)
        return self._resource(ref, body.get("apiVersion", "")).replace(
            body={"apiVersion": body.get("apiVersion") or ref.api_version, **body},
            namespace=ref.namespace or None).to_dict()

    def patch(self, ref: Ref, patch: dict, *, content_type: str = "application/merge-patch+json") -> dict:
        return self._resource(ref).patch(body=patch, name=ref.name, namespace=ref.namespace or None,
                                         content_type=content_type).to_dict()

    def delete(self, ref: Ref, *, propagation: str = "Foreground") -> bool:
        """Delete; False when it was already gone."""
        try:
            self._resource(ref).delete(name=ref.name, namespace=ref.namespace or None,
                                       body={"propagationPolicy": propagation})
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise


_BY_API: dict[int, Objects] = {}


def objects(api: Any) -> Objects:
    """The :class:`Objects` of ``api`` (discovery is done once per client)."""
    key = id(api)
    found = _BY_API.get(key)
    if found is None or found.api is not api:
        found = _BY_API[key] = Objects(api)
    return found
