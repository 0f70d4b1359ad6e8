"""RBAC objects from parameters, applied idempotently, and read back as tables.

Builders return plain dicts (the YAML the course writes by hand); :func:`apply` creates an
object, leaves it alone when it is already right, updates rules or subjects that drifted,
and refuses to change a binding's ``roleRef`` (the API forbids it: delete and re-create).

Reverse lookups read every binding once and say which one grants what to whom:
:func:`bindings_for` ("what can this subject do, and through which binding") and
:func:`who_can` ("who can VERB RESOURCE", confirmed by SubjectAccessReview).
"""
from __future__ import annotations

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..connect import create_or_keep
from ..errors import KubebookError
from .access import Resource, can
from .subjects import MASTERS, RBAC_GROUP, Subject, parse_all

API_VERSION = f"{RBAC_GROUP}/v1"


class RoleRefDrift(KubebookError):
    """A binding exists with another roleRef, which cannot be changed in place."""


# ---- builders --------------------------------------------------------------------------------
def rule(verbs, resources, *, groups=("",), resource_names=()) -> dict:
    """One PolicyRule: ``rule(["get", "list"], ["pods"])``; ``groups=("*",)`` for every API group."""
    out = {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}
    if resource_names:
        out["resourceNames"] = list(resource_names)
    return out


def role(name: str, *, namespace: str, rules: list[dict]) -> dict:
    return {"apiVersion": API_VERSION, "kind": "Role", "metadata": {"name": name, "namespace": namespace},
            "rules": rules}


def cluster_role(name: str, *, rules: list[dict]) -> dict:
    return {"apiVersion": API_VERSION, "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules}


def role_binding(name: str, *, namespace: str, role: str, subjects, role_kind: str = "Role") -> dict:
    """A RoleBinding; with ``role_kind="ClusterRole"`` the ClusterRole's rules apply in ``namespace`` only."""
    return {"apiVersion": API_VERSION, "kind": "RoleBinding", "metadata": {"name": name, "namespace": namespace},
            "subjects": [s.as_rbac() for s in parse_all(subjects)],
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": role}}


def cluster_role_binding(name: str, *, cluster_role: str, subjects) -> dict:
    return {"apiVersion": API_VERSION, "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "subjects": [s.as_rbac() for s in parse_all(subjects)],
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_role}}


def namespace_admin(subject, *, namespace: str, name: str) -> list[dict]:
    """The course's ``luffy-admin``: a Role with every verb on every resource of ``namespace``, and its
    RoleBinding to ``subject``. Nothing outside the namespace is granted."""
    return [role(name, namespace=namespace, rules=[rule(["*"], ["*"], groups=("*",))]),
            role_binding(name, namespace=namespace, role=name, subjects=[subject])]


def course_examples(*, namespace: str, user: str, group: str) -> list[dict]:
    """The course's four RBAC kinds, with its names:

    - Role ``pod-reader`` (get/watch/list pods in ``namespace``), bound to ``user`` by RoleBinding ``read-pods``;
    - ClusterRole ``secret-reader`` (get/watch/list secrets), bound to ``user`` by RoleBinding
      ``read-secrets`` in ``namespace``: a ClusterRole bound by a RoleBinding grants in that namespace only;
    - ClusterRoleBinding ``read-secrets-global``: the same ClusterRole for ``group`` in every namespace.
    """
    read = ["get", "watch", "list"]
    who, members = f"User:{user}", f"Group:{group}"
    return [role("pod-reader", namespace=namespace, rules=[rule(read, ["pods"])]),
            cluster_role("secret-reader", rules=[rule(read, ["secrets"])]),
            role_binding("read-pods", namespace=namespace, role="pod-reader", subjects=[who]),
            role_binding("read-secrets", namespace=namespace, role="secret-reader", role_kind="ClusterRole",
                         subjects=[who]),
            cluster_role_binding("read-secrets-global", cluster_role="secret-reader", subjects=[members])]


# ---- applying --------------------------------------------------------------------------------
_METHODS = {  # kind -> (create, read, replace, delete), namespaced or not
    "Role": ("create_namespaced_role", "read_namespaced_role", "replace_namespaced_role", "delete_namespaced_role"),
    "ClusterRole": ("create_cluster_role", "read_cluster_role", "replace_cluster_role", "delete_cluster_role"),
    "RoleBinding": ("create_namespaced_role_binding", "read_namespaced_role_binding",
                    "replace_namespaced_role_binding", "delete_namespaced_role_binding"),
    "ClusterRoleBinding": ("create_cluster_role_binding", "read_cluster_role_binding",
                           "replace_cluster_role_binding", "delete_cluster_role_binding"),
}


def _call(api, obj: dict, index: int, *args):
    method = getattr(client.RbacAuthorizationV1Api(api), _METHODS[obj["kind"]][index])
    namespace = obj["metadata"].get("namespace")
    name_args = (obj["metadata"]["name"],) if index else ()
    return method(*name_args, *((namespace,) if namespace else ()), *args)


def _normalised(items) -> list[dict]:
    return [{k: v for k, v in sorted(i.items()) if v not in (None, [], "")} for i in (items or [])]


def apply(api: client.ApiClient, obj: dict) -> str:
    """Create ``obj``, or bring an existing one to it. Returns "created", "unchanged" or "updated"."""
    try:
        _call(api, obj, 0, obj)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
    current = api.sanitize_for_serialization(_call(api, obj, 1))
    if "roleRef" in obj and current["roleRef"] != obj["roleRef"]:
        raise RoleRefDrift(f"{obj['kind']} {obj['metadata']['name']} refers to {current['roleRef']['kind']} "
                           f"{current['roleRef']['name']}, not {obj['roleRef']['name']}: roleRef cannot change; "
                           f"delete the binding first")
    field = "rules" if "rules" in obj else "subjects"
    if _normalised(current.get(field)) == _normalised(obj.get(field)):
        return "unchanged"
    current[field] = obj[field]
    _call(api, obj, 2, current)
    return "updated"


def apply_all(api: client.ApiClient, objects: list[dict]) -> str:
    """Apply each object; a one-line summary such as ``Role/pod-reader created, ...``."""
    return ", ".join(f"{o['kind']}/{o['metadata']['name']} {apply(api, o)}" for o in objects)


def delete(api: client.ApiClient, obj: dict) -> bool:
    """Delete ``obj`` if it exists (for tests and clean-up). True if it was there."""
    try:
        _call(api, obj, 3)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def ensure_namespace(api: client.ApiClient, name: str) -> str:
    return create_or_keep(client.CoreV1Api(api).create_namespace, {"metadata": {"name": name}})


def show(objects: list[dict]) -> pd.DataFrame:
    """Objects as a table: kind, namespace, name, rules or roleRef + subjects (what `kubectl describe` shows)."""
    rows = []
    for o in objects:
        meta = o["metadata"]
        if "rules" in o:
            what = "; ".join(_rule_text(r) for r in o["rules"])
        else:
            what = f"{o['roleRef']['kind']}/{o['roleRef']['name']} → " + \
                ", ".join(str(Subject.from_rbac(s, binding_namespace=meta.get("namespace", ""))) for s in o["subjects"])
        rows.append({"kind": o["kind"], "namespace": meta.get("namespace", ""), "name": meta["name"], "grants": what})
    return pd.DataFrame(rows, columns=["kind", "namespace", "name", "grants"])


def _rule_text(r: dict) -> str:
    if r.get("nonResourceURLs"):
        return f"{','.join(r['nonResourceURLs'])} [{','.join(r.get('verbs') or [])}]"
    groups = r.get("apiGroups") or [""]
    resources = [f"{res}.{g}" if g else res for g in groups for res in (r.get("resources") or [])]
    names = f" names={','.join(r['resourceNames'])}" if r.get("resourceNames") else ""
    return f"{','.join(resources)}{names} [{','.join(r.get('verbs') or [])}]"


def describe_rules(api: client.ApiClient, kind: str, name: str, *, namespace: str = "") -> pd.DataFrame:
    """A Role's or ClusterRole's rules as `kubectl describe` shows them: one row per rule."""
    rbac = client.RbacAuthorizationV1Api(api)
    obj = rbac.read_cluster_role(name) if kind == "ClusterRole" else rbac.read_namespaced_role(name, namespace)
    return _rules_table(api.sanitize_for_serialization(obj).get("rules") or [])


def _rules_table(rules: list[dict]) -> pd.DataFrame:
    rows = [{"resources": ",".join(f"{res}.{g}" if g else res for g in (r.get("apiGroups") or [""])
                                  for res in (r.get("resources") or [])),
             "non-resource URLs": ",".join(r.get("nonResourceURLs") or []),
             "resource names": ",".join(r.get("resourceNames") or []),
             "verbs": ",".join(r.get("verbs") or [])} for r in rules]
    return pd.DataFrame(rows, columns=["resources", "non-resource URLs", "resource names", "verbs"])


# ---- reading every binding ------------------------------------------------------------------
BINDING_COLUMNS = ["binding", "namespace", "role", "subject", "scope"]


def bindings(api: client.ApiClient) -> pd.DataFrame:
    """Every (binding, subject) pair in the cluster: binding kind/name, namespace, role, subject, scope."""
    rbac = client.RbacAuthorizationV1Api(api)
    items = [{"kind": "ClusterRoleBinding", **api.sanitize_for_serialization(b)}
             for b in rbac.list_cluster_role_binding().items]
    items += [{"kind": "RoleBinding", **api.sanitize_for_serialization(b)}
              for b in rbac.list_role_binding_for_all_namespaces().items]
    return binding_rows(items)


def binding_rows(items: list[dict]) -> pd.DataFrame:
    """Bindings (as the API returns them, with ``kind``) flattened to one row per subject."""
    rows = []
    for b in items:
        namespace = b["metadata"].get("namespace", "")
        for s in b.get("subjects") or []:
            rows.append({"binding": f"{b['kind']}/{b['metadata']['name']}", "namespace": namespace,
                         "role": f"{b['roleRef']['kind']}/{b['roleRef']['name']}",
                         "subject": str(Subject.from_rbac(s, binding_namespace=namespace)),
                         "scope": f"namespace {namespace}" if namespace else "cluster"})
    return pd.DataFrame(rows, columns=BINDING_COLUMNS)


def role_rules(items: list[dict]) -> dict[str, list[dict]]:
    """Rules of Roles and ClusterRoles (as the API returns them, with ``kind``), keyed as :func:`roles` does."""
    return {(f"ClusterRole/{r['metadata']['name']}" if r["kind"] == "ClusterRole"
             else f"Role/{r['metadata']['namespace']}/{r['metadata']['name']}"): r.get("rules") or [] for r in items}


def roles(api: client.ApiClient) -> dict[str, list[dict]]:
    """Rules of every ClusterRole and Role, keyed ``ClusterRole/NAME`` or ``Role/NS/NAME``."""
    rbac = client.RbacAuthorizationV1Api(api)
    items = [{"kind": "ClusterRole", **api.sanitize_for_serialization(r)} for r in rbac.list_cluster_role().items]
    items += [{"kind": "Role", **api.sanitize_for_serialization(r)} for r in rbac.list_role_for_all_namespaces().items]
    return role_rules(items)


def _role_key(row) -> str:
    kind, name = row["role"].split("/", 1)
    return f"ClusterRole/{name}" if kind == "ClusterRole" else f"Role/{row['namespace']}/{name}"


def bindings_for(api: client.ApiClient, subject: "str | Subject", *, all_bindings: pd.DataFrame | None = None,
                 all_roles: dict | None = None) -> pd.DataFrame:
    """What ``subject`` can do and through which binding: one row per rule it is granted.

    Bindings to the subject itself and to each of its groups count (``system:authenticated``
    included). ``system:masters`` gets a row of its own: it has every permission without any binding.
    """
    subject = Subject.parse(subject)
    table = bindings(api) if all_bindings is None else all_bindings
    all_roles = roles(api) if all_roles is None else all_roles
    rows = []
    if MASTERS in subject.groups():
        rows.append({"via": f"Group:{MASTERS}", "binding": "(none: built into the apiserver)", "scope": "cluster",
                     "role": "-", "resources": "*.*", "non-resource URLs": "*", "resource names": "", "verbs": "*"})
    for _, row in table.iterrows():
        granted_to = Subject.parse(row["subject"])
        if not subject.matches(granted_to):
            continue
        rules = _rules_table(all_roles.get(_role_key(row), []))
        for _, r in (rules.iterrows() if len(rules) else iter([(0, {"resources": "(role not found)",
                                                                  "non-resource URLs": "", "resource names": "",
                                                                  "verbs": ""})])):
            rows.append({"via": row["subject"], "binding": row["binding"], "scope": row["scope"],
                         "role": row["role"], **dict(r)})
    return pd.DataFrame(rows, columns=["via", "binding", "scope", "role", "resources", "non-resource URLs",
                                       "resource names", "verbs"])


def who_can(api: client.ApiClient, verb: str, resource: str, *, namespace: str = "",
            all_bindings: pd.DataFrame | None = None, workers: int = 8) -> pd.DataFrame:
    """Every subject named in a binding, plus ``Group:system:masters``, that may VERB RESOURCE.

    Each candidate is asked as itself alone (no ``system:authenticated``), so the answer says
    which subject holds the permission; the reason names the binding (or the built-in rule).
    A grant to ``Group:system:authenticated`` reaches every signed-in user.
    """
    from concurrent.futures import ThreadPoolExecutor
    table = bindings(api) if all_bindings is None else all_bindings
    candidates = sorted({Subject.parse(s) for s in table["subject"]} | {Subject("Group", MASTERS)})
    ask = lambda s: can(api, s, verb, Resource.parse(resource), namespace=namespace, authenticated=False)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = [r for r in pool.map(ask, candidates) if r["allowed"]]
    return pd.DataFrame(rows, columns=["subject", "verb", "resource", "namespace", "reason"])


# ---- cluster-admin audit ----------------------------------------------------------------------
def grants_everything(rules: list[dict]) -> bool:
    """Whether ``rules`` include every verb on every resource of every API group (cluster-admin's rule)."""
    return any("*" in (r.get("apiGroups") or []) and "*" in (r.get("resources") or [])
               and "*" in (r.get("verbs") or []) for r in rules)


def admins_from(table: pd.DataFrame, all_roles: dict[str, list[dict]]) -> pd.DataFrame:
    """``system:masters``, then every binding row whose role has the ``*``/``*``/``*`` rule."""
    rows = [{"subject": f"Group:{MASTERS}", "binding": "(none: built into the apiserver)", "role": "-",
             "scope": "cluster"}]
    for _, row in table.iterrows():
        if grants_everything(all_roles.get(_role_key(row), [])):
            rows.append({"subject": row["subject"], "binding": row["binding"], "role": row["role"],
                         "scope": row["scope"]})
    return pd.DataFrame(rows, columns=["subject", "binding", "role", "scope"])


def cluster_admins(api: client.ApiClient, *, confirm_with_review: bool = True) -> pd.DataFrame:
    """Every subject that is cluster-admin or equivalent, and through which binding.

    Equivalent means a ClusterRoleBinding to any ClusterRole with the ``*``/``*``/``*`` rule;
    the same role bound by a RoleBinding is admin of one namespace only and is listed with
    that scope. ``system:masters`` comes first: it needs no binding at all. With
    ``confirm_with_review`` each row is checked with a SubjectAccessReview of ``* *.*``
    (cluster-wide, or in the binding's namespace).
    """
    out = admins_from(bindings(api), roles(api))
    if confirm_with_review:
        out["allowed by apiserver"] = [
            can(api, s, "*", Resource("*", "*"), namespace=scope.removeprefix("namespace ") if scope != "cluster"
                else "", authenticated=False)["allowed"] for s, scope in zip(out["subject"], out["scope"])]
    return out
