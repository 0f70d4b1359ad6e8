"""A schedule: which runbook, when, with which parameters, and the Kubernetes objects that run it.

:func:`build` checks everything before anything is made (the cron expression, the name, every
parameter against the runbook's types, the runbook's declared permissions) and splits the
parameters: plain ones become the CronJob's arguments, secret ones (declared secret, or named
like a secret by :mod:`kubebook.safety`) and the webhook URL go into a Secret mounted as files,
never into the manifest in clear. :meth:`Schedule.manifests` is what ``kubebook schedule``
prints in a dry run and applies with ``--confirm``.

A runbook that must run on a control-plane node (etcd) says so in its metadata
(``kubebook.job``): the Pod gets the control plane's node selector and toleration, the host's
network (etcd listens on the node's loopback), the host directories of its certificate
parameters read-only, and its writable directories (snapshots) as hostPath or a claim.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import runner
from ..connect import KUBEADM_ETCD
from ..errors import ParameterError
from ..safety import mask
from . import cron, history
from .permissions import Grant, Rule

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("kubebook")
    except PackageNotFoundError:
        return "0.1.0"


VERSION = _version()
DEFAULT_IMAGE = f"kubebook:{VERSION}"    # built from the Dockerfile kubebook ships (see README)
DEFAULT_NAMESPACE = "kubebook"
JOB_HOME = "/var/lib/kubebook"           # the job's writable volume: outputs and records
SECRET_MOUNT = "/etc/kubebook/secret"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
SCHEDULE_LABEL = "kubebook.io/schedule"
LABELS = {"app.kubernetes.io/managed-by": "kubebook"}
NONROOT_UID = 65532
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CLUSTER_PARAMETERS = ("kubeconfig", "context", "lab", "network_lab")   # in a Pod: the in-cluster account


def check_name(value: str, what: str, limit: int = 63) -> str:
    if not value or len(value) > limit or not _DNS_LABEL.match(value):
        raise ParameterError(f"{what} {value!r}: lower-case letters, digits and '-', at most {limit} characters")
    return value


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def is_secret(book: runner.Runbook, name: str, value: Any) -> bool:
    """Secret if the runbook declares it so, or if kubebook.safety would mask it (name or look)."""
    param = book.parameters.get(name)
    return bool(getattr(param, "secret", False)) or mask({name: value})[name] != value


@dataclass
class Schedule:
    name: str
    namespace: str
    book: runner.Runbook
    cron: str
    values: dict[str, Any]                       # plain: the CronJob's arguments
    secret_values: dict[str, Any] = field(default_factory=dict)
    image: str = DEFAULT_IMAGE
    retries: int = 0
    retry_delay: float = 30.0
    notify: str = ""
    notify_on: str = "failure"
    fail_on: tuple[str, ...] = ()
    deadline_seconds: int = 3600
    output_claim: str = ""                       # a PVC for outputs and records ("": an emptyDir)
    data_claim: str = ""                         # a PVC for the runbook's writable directory ("": hostPath)
    time_zone: str = ""
    output_url: str = ""                         # outputs to object storage (s3://...) instead of the volume
    target: str = ""                             # what it acts on, for people (a lab, a context)

    # ---- names ----------------------------------------------------------------------------
    @property
    def labels(self) -> dict[str, str]:
        return {**LABELS, SCHEDULE_LABEL: self.name}

    @property
    def service_account(self) -> str:
        return f"kubebook-{self.name}"

    @property
    def records_configmap(self) -> str:
        return history.name_for(self.name)

    @property
    def secret_name(self) -> str:
        return f"kubebook-{self.name}-secret"

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_values or self.notify)

    @property
    def control_plane(self) -> bool:
        return self.book.job.get("placement") == "control-plane"

    @property
    def grant(self) -> Grant:
        rules = [Rule.parse(r, runbook=self.book.id) for r in self.book.permissions or ()]
        rules.append(Rule(("",), ("configmaps",), ("get", "update"), resource_names=(self.records_configmap,),
                          why="keep this schedule's run records"))
        return Grant(self.service_account, self.namespace, rules)

    # ---- the command --------------------------------------------------------------------------
    def arguments(self, *, output_dir: str = f"{JOB_HOME}/runs", secret_dir: str = SECRET_MOUNT,
                  record: bool = True) -> list[str]:
        """``kubebook`` arguments the job runs (the same on a host, with local paths)."""
        output_dir = self.output_url or output_dir
        args = ["run", self.book.id]
        for name, value in self.values.items():
            args += ["-p", name, _arg(value)]
        if self.secret_values:
            args += ["--parameters-file", f"{secret_dir}/parameters.yaml"]
        args += ["--output-dir", output_dir, "--no-progress"]
        if self.retries:
            args += ["--retries", str(self.retries), "--retry-delay", f"{self.retry_delay:g}"]
        for rule in self.fail_on:
            args += ["--fail-on", rule]
        if self.notify:
            args += ["--notify", f"@{secret_dir}/notify-url", "--notify-on", self.notify_on]
        if record:
            args += ["--record-configmap", f"{self.namespace}/{self.records_configmap}"]
        return args

    def secret_files(self) -> dict[str, str]:
        files = {}
        if self.secret_values:
            files["parameters.yaml"] = yaml.safe_dump(self.secret_values, sort_keys=True)
        if self.notify:
            files["notify-url"] = self.notify + "\n"
        return files

    # ---- host paths of control-plane runbooks -------------------------------------------------
    def host_mounts(self) -> list[tuple[str, str, bool]]:
        """(volume name, host directory, read-only) for the runbook's declared file parameters."""
        job, values = self.book.job, {**self.values, **self.secret_values}
        read_only = sorted({str(Path(values[p]).parent) for p in job.get("read_only_files", [])
                            if values.get(p)})
        writable = list(dict.fromkeys(str(values[p]) for p in job.get("writable_dirs", {})
                                      if values.get(p) and "://" not in str(values[p])))
        mounts = [(f"host-ro-{i}", d, True) for i, d in enumerate(read_only)]
        return mounts + [(f"host-data-{i}", d, False) for i, d in enumerate(writable)]

    # ---- manifests ------------------------------------------------------------------------------
    def manifests(self) -> list[dict]:
        """Every object the schedule needs, in the order they are applied (the Namespace apart)."""
        meta = lambda name: {"name": name, "namespace": self.namespace, "labels": self.labels}
        objects: list[dict] = [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(self.service_account)},
            history.manifest(self.namespace, self.name, self.labels),
        ]
        if self.has_secret:
            objects.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta(self.secret_name),
                            "type": "Opaque", "stringData": self.secret_files()})
        objects += self.grant.objects({SCHEDULE_LABEL: self.name})
        objects.append(self.cronjob())
        return objects

    def cronjob(self) -> dict:
        volumes: list[dict] = [
            {"name": "work", **({"persistentVolumeClaim": {"claimName": self.output_claim}} if self.output_claim
                                else {"emptyDir": {}})},
            {"name": "tmp", "emptyDir": {}},
        ]
        mounts = [{"name": "work", "mountPath": JOB_HOME}, {"name": "tmp", "mountPath": "/tmp"}]
        if self.has_secret:
            volumes.append({"name": "secret", "secret": {"secretName": self.secret_name, "defaultMode": 0o400}})
            mounts.append({"name": "secret", "mountPath": SECRET_MOUNT, "readOnly": True})
        for name, directory, read_only in self.host_mounts():
            if name == "host-data-0" and self.data_claim:   # the claim holds the first declared directory
                volumes.append({"name": name, "persistentVolumeClaim": {"claimName": self.data_claim}})
            else:
                volumes.append({"name": name, "hostPath": {"path": directory,
                                                           "type": "Directory" if read_only else "DirectoryOrCreate"}})
            mounts.append({"name": name, "mountPath": directory, **({"readOnly": True} if read_only else {})})
        env = [{"name": "KUBEBOOK_SCHEDULE", "value": self.name},
               {"name": "HOME", "value": "/tmp"},                      # jupyter's runtime files, matplotlib's cache
               {"name": "XDG_STATE_HOME", "value": f"{JOB_HOME}/state"}]  # run records beside the outputs
        root = self.control_plane and self.book.job.get("run_as_root", False)
        pod: dict = {
            "serviceAccountName": self.service_account,
            "automountServiceAccountToken": True,
            "restartPolicy": "Never",
            "securityContext": ({"runAsUser": 0, "runAsGroup": 0} if root
                                else {"runAsNonRoot": True, "runAsUser": NONROOT_UID, "runAsGroup": NONROOT_UID,
                                      "fsGroup": NONROOT_UID}) | {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "runbook", "image": self.image, "imagePullPolicy": "IfNotPresent",
                "args": self.arguments(), "env": env, "volumeMounts": mounts,
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
            "volumes": volumes,
        }
        if self.control_plane:
            pod["nodeSelector"] = {CONTROL_PLANE_LABEL: ""}
            pod["tolerations"] = [{"key": CONTROL_PLANE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]
            if self.book.job.get("host_network"):
                pod["hostNetwork"] = True
                pod["dnsPolicy"] = "ClusterFirstWithHostNet"
        spec: dict = {
            "schedule": self.cron,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {"metadata": {"labels": self.labels}, "spec": {
                "backoffLimit": 0,                      # kubebook retries transient failures itself
                "activeDeadlineSeconds": self.deadline_seconds,
                "ttlSecondsAfterFinished": 7 * 86400,
                "template": {"metadata": {"labels": self.labels}, "spec": pod}}},
        }
        if self.time_zone:
            spec["timeZone"] = self.time_zone
        return {"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels,
                             "annotations": {"kubebook.io/runbook": self.book.id,
                                             "kubebook.io/target": self.target}},
                "spec": spec}

    def show(self) -> str:
        """Every manifest as YAML, Secret values masked: what a dry run prints."""
        return "---\n".join(yaml.safe_dump(mask(o), sort_keys=False) for o in self.manifests())


def job_values(book: runner.Runbook, values: dict[str, Any], lab=None) -> dict[str, Any]:
    """The runbook's parameters as the job passes them.

    Connection parameters (kubeconfig, context, lab) are dropped: in a Pod the runbook uses the
    job's ServiceAccount. On a kubebook lab, the lab's own parameters (its etcd endpoint and
    certificates, the values in the runbook's ``lab_parameters``) are filled in explicitly,
    since the job cannot look up a lab by name. Declared writable directories get their paths.
    """
    out: dict[str, Any] = {}
    if lab is not None:
        if "endpoints" in book.parameters:
            out.update({k: v for k, v in lab.etcd_params().items() if k in book.parameters})
        out.update({k: v for k, v in book.lab_defaults.items() if k not in CLUSTER_PARAMETERS})
    out.update({k: v for k, v in values.items() if k not in CLUSTER_PARAMETERS})
    for name in book.job.get("read_only_files", []):   # explicit, so the job mounts their directories
        # an etcd file left "" resolves to kubeadm's in the Pod (no lab, no ETCDCTL_* there): name it
        default = (book.parameters[name].default if book.parameters.get(name) else "") or KUBEADM_ETCD.get(name, "")
        if not out.get(name) and book.parameters.get(name) and default:
            out[name] = default
    for name, where in book.job.get("writable_dirs", {}).items():
        if not out.get(name) and (where.get("default") or (lab is not None and where.get("lab"))):
            out[name] = str(lab.dir / where["lab"]) if lab is not None and where.get("lab") else where["default"]
    return out


def build(ref: str, cron_expression: str, values: dict[str, Any], *, name: str = "",
          namespace: str = DEFAULT_NAMESPACE, lab=None, image: str = DEFAULT_IMAGE, retries: int = 0,
          retry_delay: float = 30.0, notify: str = "", notify_on: str = "failure", fail_on=(),
          deadline_seconds: int = 3600, output_claim: str = "", data_claim: str = "", time_zone: str = "",
          output_url: str = "", target: str = "") -> Schedule:
    """A checked schedule; ParameterError (exit 2) on the first problem, before anything is made."""
    from .. import drift
    book = runner.find(ref)
    if book.permissions is None:
        raise ParameterError(f"{book.id} declares no permissions (notebook metadata kubebook.permissions), so "
                             "its job's rights cannot be known: declare them beside the runbook first")
    expression = cron.validate(cron_expression)
    name = check_name(name or book.id.replace("/", "-"), "schedule name", 52)   # CronJob names: 52
    check_name(namespace, "namespace")
    for claim, what in ((output_claim, "--output-pvc"), (data_claim, "--data-pvc")):
        if claim:
            check_name(claim, what, 253)
    if retries < 0 or retry_delay < 0 or deadline_seconds <= 0:
        raise ParameterError("--retries and --retry-delay must be ≥ 0, --deadline > 0")
    if notify and not re.match(r"^https?://", notify):
        raise ParameterError(f"--notify: an http(s) URL is needed, not {notify[:20]!r}...")
    for rule in fail_on:
        drift.Rule.parse(rule)
    if output_url and "://" not in output_url:
        raise ParameterError(f"--output-url {output_url!r}: a URL papermill can write (s3://bucket/runs...)")
    converted = book.validate(job_values(book, values, lab))
    secret = {k: v for k, v in converted.items() if is_secret(book, k, v)}
    plain = {k: v for k, v in converted.items() if k not in secret}
    schedule = Schedule(name=name, namespace=namespace, book=book, cron=expression, values=plain,
                        secret_values=secret, image=image, retries=retries, retry_delay=retry_delay, notify=notify,
                        notify_on=notify_on, fail_on=tuple(fail_on), deadline_seconds=deadline_seconds,
                        output_claim=output_claim, data_claim=data_claim, time_zone=time_zone, output_url=output_url,
                        target=target or (f"lab {lab.name}" if lab is not None else ""))
    schedule.grant  # parse the declared permissions now: a bad declaration is refused before anything
    return schedule
