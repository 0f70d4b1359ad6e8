"""Step checks for the RBAC labs: a Role and RoleBinding made by hand, checked by the authorizer.

    allowed(api, "User:dave", "get", "pods", "luffy")      # after: kubectl create rolebinding ... --user=dave -n luffy
    denied(api, "User:dave", "delete", "pods", "luffy")    # after taking a permission away

The answer is the apiserver's own (SubjectAccessReview). When it is not the one the step asks
for, the bindings are read to say why: a binding in another namespace, another subject kind or a
misspelt name, a roleRef to a role that does not exist, or a role whose rules miss the verb.
"""
from __future__ import annotations

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..checks import close_to, verdict
from .access import Resource, can
from .subjects import Subject


def _rule_allows(rule: dict, verb: str, resource: Resource) -> bool:
    plural = resource.resource + (f"/{resource.subresource}" if resource.subresource else "")
    return (any(v in ("*", verb) for v in rule.get("verbs") or [])
            and any(g in ("*", resource.group) for g in rule.get("apiGroups") or [])
            and any(r in ("*", plural) for r in rule.get("resources") or []))


def _role_rules(api, kind: str, name: str, namespace: str) -> list[dict] | None:
    rbac = client.RbacAuthorizationV1Api(api)
    try:
        role = rbac.read_cluster_role(name) if kind == "ClusterRole" else rbac.read_namespaced_role(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return api.sanitize_for_serialization(role).get("rules") or []


def _why_not(api, subject: Subject, verb: str, resource: Resource, namespace: str) -> str:
    rbac = client.RbacAuthorizationV1Api(api)
    bindings = [("RoleBinding", api.sanitize_for_serialization(b)) for b in rbac.list_role_binding_for_all_namespaces().items]
    bindings += [("ClusterRoleBinding", api.sanitize_for_serialization(b)) for b in rbac.list_cluster_role_binding().items]
    naming, near = [], []
    for kind, b in bindings:
        ns = b["metadata"].get("namespace", "")
        for s in b.get("subjects") or []:
            listed = Subject.from_rbac(s, binding_namespace=ns)
            if listed == subject:
                naming.append((kind, b))
            elif listed.name == subject.name or close_to(subject.name, [listed.name]):
                near.append((kind, b, listed))
    for kind, b in naming:
        ns, ref = b["metadata"].get("namespace", ""), b["roleRef"]
        where = f"{kind} {ns + '/' if ns else ''}{b['metadata']['name']}"
        if kind == "RoleBinding" and ns != namespace:
            return (f"{where} names {subject} but is in namespace {ns}: a RoleBinding grants only in its own "
                    f"namespace; create it with -n {namespace}")
        rules = _role_rules(api, ref["kind"], ref["name"], ns)
        if rules is None:
            return f"{where} refers to {ref['kind']} {ref['name']}, which does not exist" + \
                (f" in namespace {ns}" if ref["kind"] == "Role" else "")
        if not any(_rule_allows(r, verb, resource) for r in rules):
            shown = "; ".join(f"{','.join(r.get('verbs') or [])} on {','.join(r.get('resources') or [])}"
                              + (f" (apiGroups {','.join(repr(g) for g in r.get('apiGroups') or [])})" if r.get("apiGroups") != [""] else "")
                              for r in rules) or "no rules"
            return f"{where} binds {ref['kind']} {ref['name']}, whose rules ({shown}) do not allow {verb} {resource}"
    for kind, b, listed in near:
        ns = b["metadata"].get("namespace", "")
        return (f"{kind} {ns + '/' if ns else ''}{b['metadata']['name']} binds {listed}, not {subject}: "
                + ("the kind differs" if listed.name == subject.name else "check the name's spelling"))
    who = {"User": f"--user={subject.name}", "Group": f"--group={subject.name}",
           "ServiceAccount": f"--serviceaccount={subject.namespace}:{subject.name}"}[subject.kind]
    return (f"no RoleBinding or ClusterRoleBinding names {subject}: e.g. `kubectl create rolebinding NAME "
            f"-n {namespace} --role=ROLE {who}` with a Role allowing {verb} on {resource}")


def allowed(api, subject: str, verb: str, resource: str, namespace: str) -> pd.DataFrame:
    """May ``subject`` ``verb`` ``resource`` in ``namespace`` now? A hint says why not."""
    who, what = Subject.parse(subject), Resource.parse(resource)
    step = f"{who} may {verb} {what} in {namespace}"
    row = can(api, who, verb, what, namespace=namespace)
    if row["allowed"]:
        return verdict(step, True)
    return verdict(step, False, _why_not(api, who, verb, what, namespace))


def denied(api, subject: str, verb: str, resource: str, namespace: str) -> pd.DataFrame:
    """Is ``subject`` no longer allowed? The hint names the binding that still allows it."""
    who, what = Subject.parse(subject), Resource.parse(resource)
    step = f"{who} may not {verb} {what} in {namespace}"
    row = can(api, who, verb, what, namespace=namespace)
    if not row["allowed"]:
        return verdict(step, True)
    return verdict(step, False, f"still allowed: {row['reason']}")
