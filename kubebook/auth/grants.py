"""Granting and revoking one permission through a RoleBinding, as plan steps.

The access matrix answers "may SUBJECT VERB RESOURCE in NAMESPACE" with the authorizer's reason,
which names the binding that allows it. From that:

- :func:`grant` gives the permission with the smallest RBAC change: a Role holding exactly that
  rule and a RoleBinding of it to the subject, through :func:`kubebook.auth.rbac.apply` (created
  and deleted at clean-up; a binding of that name that exists gets the subject added, after a
  backup, and is put back at clean-up);
- :func:`revoke` takes the subject the binding names out of it (``plan.modify``: the binding is
  backed up first and put back at clean-up). Only RoleBindings are revoked here: a
  ClusterRoleBinding grants in every namespace, and ``system:masters`` needs no binding at all.

    grant(plan, "User:dave", "get", "pods", "kubebook-auth")
    revoke(plan, 'RBAC: allowed by RoleBinding "read-pods/kubebook-auth" of Role "pod-reader" to User "dave"')
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import KubebookError
from ..objects import Ref, objects
from ..plan import Plan
from . import rbac
from .access import Resource, require
from .subjects import MASTERS, RBAC_GROUP, Subject

GRANT_PREFIX = "kubebook-grant-"

# kube-apiserver's RBAC authorizer: `RBAC: allowed by RoleBinding "NAME/NAMESPACE" of Role "ROLE" to User "NAME"`
_REASON = re.compile(r'allowed by (?P<kind>RoleBinding|ClusterRoleBinding) "(?P<binding>[^"]+)" of '
                     r'(?P<role_kind>Role|ClusterRole) "(?P<role>[^"]+)" to (?P<subject_kind>User|Group|ServiceAccount) '
                     r'"(?P<subject>[^"]+)"')


@dataclass(frozen=True)
class Granting:
    """The binding an authorizer reason names, and the subject in it that matched."""

    kind: str
    name: str
    namespace: str
    role: str
    subject: Subject

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name} ({self.role}) to {self.subject}"


def granting(reason: str) -> Granting | None:
    """Parse the reason of an allowed SubjectAccessReview; None when no binding decided it."""
    found = _REASON.search(reason or "")
    if not found:
        return None
    name, namespace = found["binding"], ""
    if found["kind"] == "RoleBinding":
        name, _, namespace = found["binding"].partition("/")
    subject_name = found["subject"]
    if found["subject_kind"] == "ServiceAccount":
        sa_namespace, _, sa_name = subject_name.partition("/")
        subject = Subject("ServiceAccount", sa_name, sa_namespace)
    else:
        subject = Subject(found["subject_kind"], subject_name)
    return Granting(found["kind"], name, namespace, f"{found['role_kind']}/{found['role']}", subject)


def grant_name(verb: str, resource: str) -> str:
    """``kubebook-grant-get-pods``, ``kubebook-grant-create-deployments.apps``: a DNS-1123 name."""
    text = re.sub(r"[^a-z0-9.-]+", "-", f"{verb}-{resource}".lower()).strip("-.")
    return (GRANT_PREFIX + text.replace("*", "all"))[:253]


def grant(plan: Plan, subject: str | Subject, verb: str, resource: str | Resource, namespace: str) -> list:
    """Allow ``subject`` to ``verb`` ``resource`` in ``namespace``: the namespace if missing, a one-rule
    Role and a RoleBinding to it, each a step of ``plan``."""
    subject, resource = Subject.parse(subject), Resource.parse(resource)
    if not namespace:
        raise KubebookError("a RoleBinding grants in one namespace: choose the namespace to grant in")
    if MASTERS in subject.groups(authenticated=False):
        raise KubebookError(f"{subject} is in {MASTERS}: it is allowed everything already")
    name = grant_name(verb, str(resource))
    plural = resource.resource + (f"/{resource.subresource}" if resource.subresource else "")
    role = rbac.role(name, namespace=namespace, rules=[rbac.rule([verb], [plural], groups=(resource.group,))])
    current = objects(plan.api).get(Ref("RoleBinding", name, namespace))
    subjects = [Subject.from_rbac(s, binding_namespace=namespace) for s in (current or {}).get("subjects") or []]
    if subject not in subjects:
        subjects.append(subject)
    binding = rbac.role_binding(name, namespace=namespace, role=name, subjects=[str(s) for s in subjects])
    return [rbac.create_namespace(plan, namespace), *rbac.apply_objects(plan, [role, binding])]


def revoke(plan: Plan, reason: str) -> str | None:
    """Take away what one RoleBinding grants to the subject an authorizer ``reason`` names: the
    subject is removed from the binding (backed up first); its other subjects and the Role stay."""
    source = granting(reason)
    if source is None:
        raise KubebookError(f"no binding to revoke: {reason or 'the authorizer gave no reason'}")
    if source.kind != "RoleBinding":
        raise KubebookError(f"granted by {source}: a ClusterRoleBinding applies in every namespace; "
                            f"it is not changed from one namespace's matrix")
    ref = Ref("RoleBinding", source.name, source.namespace)
    binding = objects(plan.api).get(ref)
    if binding is None:
        raise KubebookError(f"RoleBinding {source.namespace}/{source.name} no longer exists")
    step = f"revoke-{source.name}"
    if require(plan, step, [("get", f"rolebindings.{RBAC_GROUP}", source.namespace, source.name),
                            ("patch", f"rolebindings.{RBAC_GROUP}", source.namespace, source.name)]):
        return None  # a dry run: the table says where the run would stop

    def others(subjects: list[dict]) -> list[dict]:
        return [s for s in subjects or [] if Subject.from_rbac(s, binding_namespace=source.namespace) != source.subject]

    def edit(current: dict) -> dict | None:
        subjects = current.get("subjects") or []
        left = others(subjects)
        return None if len(left) == len(subjects) else {"subjects": left or None}

    remaining = ", ".join(str(Subject.from_rbac(s, binding_namespace=source.namespace))
                          for s in others(binding.get("subjects") or [])) or "no subject: it grants nothing"
    return plan.modify(ref, edit, step=step,
                       description=f"remove {source.subject} from RoleBinding {source.namespace}/{source.name} "
                                   f"(left: {remaining})" + ("" if plan.record.owns(ref, binding) else
                                                            "; backed up first, put back at clean-up"),
                       command=f"kubectl edit rolebinding {source.name} -n {source.namespace}")


__all__ = ["GRANT_PREFIX", "Granting", "RBAC_GROUP", "grant", "grant_name", "granting", "revoke"]
