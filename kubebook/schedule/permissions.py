"""Least privilege for a scheduled runbook: the RBAC rules it declares, and proof they are all it gets.

A runbook lists what it does to the API in its notebook metadata (``kubebook.permissions``),
one rule per line of need, beside the code that needs it::

    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterrolebindings"],
     "verbs": ["list"], "scope": "cluster", "why": "every binding, to find the admins"}

``scope`` is ``cluster`` (a ClusterRole and ClusterRoleBinding: cluster-scoped resources, or
every namespace), or a rule names its ``namespace`` (a Role and RoleBinding there); a rule with
neither applies in the job's own namespace. Wildcards are refused: a scheduled job gets the
verbs and resources it names and nothing else. :func:`prove` asks the apiserver, with
SubjectAccessReviews, that each declared permission is allowed and that a sample of others
(reading Secrets, deleting, escalating) is denied.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..errors import KubebookError

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubebook"}


class PermissionDeclarationError(KubebookError):
    exit_code = 2


@dataclass(frozen=True)
class Rule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    scope: str = ""                      # "cluster", or "" (a namespace)
    namespace: str = ""                  # "" with scope "": the job's namespace
    resource_names: tuple[str, ...] = ()
    why: str = ""

    @classmethod
    def parse(cls, data: dict, *, runbook: str = "") -> "Rule":
        where = f"{runbook}: permission {data!r}"
        groups, resources, verbs = (tuple(data.get(k) or ()) for k in ("apiGroups", "resources", "verbs"))
        if not resources or not verbs or not groups:
            raise PermissionDeclarationError(f"{where}: apiGroups, resources and verbs are all needed")
        if "*" in groups + resources + verbs:
            raise PermissionDeclarationError(f"{where}: no wildcards in a scheduled job's permissions")
        unknown = [v for v in verbs if v not in VERBS]
        if unknown:
            raise PermissionDeclarationError(f"{where}: unknown verb {unknown[0]!r}")
        scope = data.get("scope", "")
        if scope not in ("", "cluster", "namespace"):
            raise PermissionDeclarationError(f"{where}: scope is 'cluster' or 'namespace'")
        if scope == "cluster" and data.get("namespace"):
            raise PermissionDeclarationError(f"{where}: a cluster rule has no namespace")
        return cls(groups, resources, verbs, "cluster" if scope == "cluster" else "", data.get("namespace", ""),
                   tuple(data.get("resourceNames") or ()), data.get("why", ""))

    def in_namespace(self, job_namespace: str) -> str:
        return "" if self.scope == "cluster" else (self.namespace or job_namespace)

    def as_rbac(self) -> dict:
        out = {"apiGroups": list(self.api_groups), "resources": list(self.resources), "verbs": list(self.verbs)}
        if self.resource_names:
            out["resourceNames"] = list(self.resource_names)
        return out

    def allows(self, verb: str, group: str, resource: str, namespace: str, name: str, job_namespace: str) -> bool:
        """Whether this rule, as bound for the job, covers a request (to keep it out of the denied sample)."""
        bound = self.in_namespace(job_namespace)
        return (verb in self.verbs and group in self.api_groups and resource in self.resources
                and (bound == "" or bound == namespace)
                and (not self.resource_names or name in self.resource_names))


@dataclass
class Grant:
    """What a schedule's ServiceAccount is given: its rules, and the RBAC objects that carry them."""

    service_account: str
    namespace: str
    rules: list[Rule] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return f"ServiceAccount:{self.namespace}:{self.service_account}"

    def cluster_role_name(self) -> str:
        return f"kubebook:schedule:{self.namespace}:{self.service_account}"

    def objects(self, labels: dict[str, str]) -> list[dict]:
        """Roles with their bindings: one Role per namespace its rules name, one ClusterRole for the rest."""
        meta = lambda name, namespace="": {"name": name, **({"namespace": namespace} if namespace else {}),
                                           "labels": {**MANAGED_BY, **labels}}
        subject = [{"kind": "ServiceAccount", "name": self.service_account, "namespace": self.namespace}]
        out: list[dict] = []
        cluster = [r.as_rbac() for r in self.rules if r.scope == "cluster"]
        if cluster:
            name = self.cluster_role_name()
            out += [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name),
                     "rules": cluster},
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(name),
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                     "subjects": subject}]
        for namespace in sorted({r.in_namespace(self.namespace) for r in self.rules if r.scope != "cluster"}):
            rules = [r.as_rbac() for r in self.rules if r.scope != "cluster" and r.in_namespace(self.namespace) == namespace]
            name = self.service_account
            out += [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name, namespace),
                     "rules": rules},
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": meta(name, namespace),
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                     "subjects": subject}]
        return out

    def table(self) -> pd.DataFrame:
        """The rules as a table: what, where, and why (from the runbook's declaration)."""
        rows = [{"verbs": ",".join(r.verbs), "resources": ",".join(f"{res}.{g}" if g else res for g in r.api_groups
                                                                    for res in r.resources),
                 "names": ",".join(r.resource_names) or "(any)",
                 "where": "cluster" if r.scope == "cluster" else f"namespace {r.in_namespace(self.namespace)}",
                 "why": r.why} for r in self.rules]
        return pd.DataFrame(rows, columns=["verbs", "resources", "names", "where", "why"])

    # ---- what to ask the apiserver ------------------------------------------------------------
    def needed(self) -> list[dict]:
        """Every request the rules allow, one check each."""
        checks = []
        for r in self.rules:
            for group in r.api_groups:
                for resource in r.resources:
                    for verb in r.verbs:
                        for name in r.resource_names or ("",):
                            checks.append({"verb": verb, "group": group, "resource": resource,
                                           "namespace": r.in_namespace(self.namespace), "name": name,
                                           "expected": True, "why": r.why or "declared by the runbook"})
        return checks

    def outside(self) -> list[dict]:
        """A sample of requests the job must not be able to make: read Secrets, delete or change
        anything, escalate. Requests a declared rule covers are left out."""
        namespaces = sorted({self.namespace, "kube-system", "default", ""})
        sample = [("get", "", "secrets"), ("list", "", "secrets"), ("watch", "", "secrets")]
        touched = sorted({(g, res) for r in self.rules for g in r.api_groups for res in r.resources})
        for group, resource in touched + [("", "pods"), ("", "configmaps"), ("", "namespaces"), ("", "nodes"),
                                          ("apps", "deployments"), ("batch", "cronjobs"),
                                          ("rbac.authorization.k8s.io", "clusterrolebindings")]:
            sample += [("delete", group, resource), ("deletecollection", group, resource), ("update", group, resource),
                       ("patch", group, resource), ("create", group, resource)]
        sample += [("create", "", "pods/exec"), ("create", "", "serviceaccounts/token"),
                   ("impersonate", "", "users"), ("impersonate", "", "serviceaccounts"),
                   ("escalate", "rbac.authorization.k8s.io", "clusterroles"),
                   ("bind", "rbac.authorization.k8s.io", "clusterroles")]
        checks, seen = [], set()
        for verb, group, resource in sample:
            for namespace in namespaces:
                key = (verb, group, resource, namespace)
                base = resource.split("/")[0]
                if key in seen or any(r.allows(verb, group, base, namespace, "", self.namespace) for r in self.rules):
                    continue
                seen.add(key)
                checks.append({"verb": verb, "group": group, "resource": resource, "namespace": namespace,
                               "name": "", "expected": False, "why": "not needed by the runbook"})
        return checks


def prove(api, grant: Grant, *, workers: int = 8) -> pd.DataFrame:
    """Ask the apiserver (SubjectAccessReview) each needed and each sampled forbidden request.

    One row per check with ``allowed`` as the apiserver answered and ``ok`` when that is what
    the grant intends. The caller decides what a wrong answer means (``schedule`` stops)."""
    from concurrent.futures import ThreadPoolExecutor
    from ..auth.access import Resource, _Reviewer, can
    reviewer = _Reviewer(api)
    checks = grant.needed() + grant.outside()

    def ask(check: dict) -> dict:
        base, _, sub = check["resource"].partition("/")
        answer = can(reviewer, grant.subject, check["verb"], Resource(base, check["group"], sub),
                     namespace=check["namespace"], name=check["name"])
        shown = check["resource"] + (f".{check['group']}" if check["group"] else "")
        return {"verb": check["verb"], "resource": shown, "namespace": check["namespace"] or "(all / cluster)",
                "name": check["name"], "expected": "allowed" if check["expected"] else "denied",
                "apiserver": "allowed" if answer["allowed"] else "denied",
                "ok": answer["allowed"] == check["expected"], "why": check["why"]}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(ask, checks))
    return pd.DataFrame(rows, columns=["verb", "resource", "namespace", "name", "expected", "apiserver", "ok", "why"])
