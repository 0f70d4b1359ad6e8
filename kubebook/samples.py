"""Sample objects for the lab: the course's ``luffy`` namespace with one object of each kind a
recovery has to handle (and a custom resource), so classrooms and tests can break and mend it.

Data only: the topics that stage a disaster with them (``kubebook.etcd.rehearsal``) create them
through their plans; nothing here talks to a cluster.
"""
from __future__ import annotations

import base64

CRD_GROUP = "luffy.kubebook.io"
CRD_NAME = f"appconfigs.{CRD_GROUP}"


def app_config_crd() -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {"group": CRD_GROUP, "scope": "Namespaced",
                 "names": {"plural": "appconfigs", "singular": "appconfig", "kind": "AppConfig"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


def luffy(namespace: str = "luffy", *, secret_value: str = "change-me") -> list[dict]:
    """Namespace, ServiceAccount, Role, RoleBinding, ConfigMap, Secret, PV+PVC, Deployment, Service,
    CronJob and an AppConfig custom resource (the CRD is cluster-scoped and listed first)."""
    labels = {"app": "eladmin-web"}
    pv_name = f"{namespace}-mysql-data"
    secret_b64 = base64.b64encode(secret_value.encode()).decode()
    return [
        app_config_crd(),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "eladmin", "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "pod-reader", "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "eladmin-pod-reader", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "eladmin", "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "eladmin-config", "namespace": namespace},
         "data": {"DB_HOST": "mysql", "DB_PORT": "3306"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mysql-password", "namespace": namespace},
         "type": "Opaque", "data": {"password": secret_b64}},
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual",
                  "hostPath": {"path": f"/data/{pv_name}"},
                  "claimRef": {"namespace": namespace, "name": "mysql-data"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "mysql-data", "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "volumeName": pv_name,
                  "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "eladmin-web", "namespace": namespace},
         "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               # a drill has nothing to drain: without a grace period the namespace
                               # controller does not wait 30 s per deletion before it looks again
                               "spec": {"serviceAccountName": "eladmin", "terminationGracePeriodSeconds": 0,
                                        "containers": [{"name": "web", "image": "nginx:1.27",
                                                        "envFrom": [{"configMapRef": {"name": "eladmin-config"}}],
                                                        "resources": {"requests": {"cpu": "100m",
                                                                                   "memory": "64Mi"}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "eladmin-web", "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 80}]}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "db-backup", "namespace": namespace},
         "spec": {"schedule": "0 3 * * *",
                  "jobTemplate": {"spec": {"template": {"spec": {
                      "restartPolicy": "OnFailure",
                      "containers": [{"name": "backup", "image": "mysql:8", "command": ["true"]}]}}}}}},
        {"apiVersion": f"{CRD_GROUP}/v1", "kind": "AppConfig", "metadata": {"name": "eladmin", "namespace": namespace},
         "spec": {"theme": "dark", "replicas": 2, "features": ["audit", "export"]}},
    ]
