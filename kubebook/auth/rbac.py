"""RBAC objects from parameters, applied as plan steps, and read back as tables.

Builders return plain dicts (the YAML the course writes by hand). :func:`apply` makes one a
step of a :class:`kubebook.plan.Plan`: created (deleted at clean-up), kept when already right,
or, when an object of that name exists with other rules or subjects, backed up, replaced and put
back at clean-up. A binding's ``roleRef`` cannot change in place (the API forbids it): that is
refused in the dry run already, never forced. Before it changes anything a step asks whether the
run's own credential may, and says plainly what RBAC refuses (:func:`kubebook.auth.access.require`).

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
from ..objects import Ref, objects as objects_of
from ..plan import Plan
from ..show import named
from .access import Resource, can, require
from .subjects import MASTERS, RBAC_GROUP, Subject, parse_all

API_VERSION = f"{RBAC_GROUP}/v1"
PLURAL = {"Role": "roles", "ClusterRole": "clusterroles", "RoleBinding": "rolebindings",
          "ClusterRoleBinding": "clusterrolebindings"}


class RoleRefDrift(KubebookError):
    """A binding exists with another roleRef, which cannot be changed in place."""


class ObjectDrift(KubebookError):
    """An object exists with other rules or subjects, and no plan step may back it up and replace it."""


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


def pod_admin(subject, *, namespace: str, name: str) -> list[dict]:
    """The course's ``pods-reader-writer``: a Role with every verb on Pods in ``namespace``, bound to ``subject``."""
    return [role(name, namespace=namespace, rules=[rule(["*"], ["pods"])]),
            role_binding(name, namespace=namespace, role=name, subjects=[subject])]


def course_examples(*, namespace: str, user: str, group: str, cluster_role_name: str = "secret-reader",
                    cluster_binding_name: str = "read-secrets-global") -> list[dict]:
    """The course's four RBAC kinds, with its names:

    - Role ``pod-reader`` (get/watch/list pods in ``namespace``), bound to ``user`` by RoleBinding ``read-pods``;
    - ClusterRole ``secret-reader`` (get/watch/list secrets), bound to ``user`` by RoleBinding
      ``read-secrets`` in ``namespace``: a ClusterRole bound by a RoleBinding grants in that namespace only;
    - ClusterRoleBinding ``read-secrets-global``: the same ClusterRole for ``group`` in every namespace.
    """
    read = ["get", "watch", "list"]
    who, members = f"User:{user}", f"Group:{group}"
    return [role("pod-reader", namespace=namespace, rules=[rule(read, ["pods"])]),
            cluster_role(cluster_role_name, rules=[rule(read, ["secrets"])]),
            role_binding("read-pods", namespace=namespace, role="pod-reader", subjects=[who]),
            role_binding("read-secrets", namespace=namespace, role=cluster_role_name, role_kind="ClusterRole",
                         subjects=[who]),
            cluster_role_binding(cluster_binding_name, cluster_role=cluster_role_name, subjects=[members])]


def scopes(objects: list[dict]) -> list[str]:
    """What a plan must be confirmed for to apply ``objects``: their namespaces, and each cluster-scoped
    object by kind/name (a ClusterRoleBinding reaches every namespace, so a namespace never covers it)."""
    return list(dict.fromkeys(Ref.of(o).scope for o in objects))


# ---- applying --------------------------------------------------------------------------------
def _field(obj: dict) -> str:
    return "rules" if "rules" in obj else "subjects"


def _normalised(items) -> list[dict]:
    return [{k: v for k, v in sorted(i.items()) if v not in (None, [], "")} for i in (items or [])]


def _same(current: dict, obj: dict) -> bool:
    return _normalised(current.get(_field(obj))) == _normalised(obj.get(_field(obj)))


def _check_role_ref(current: dict | None, obj: dict) -> None:
    if current is not None and "roleRef" in obj and current.get("roleRef") != obj["roleRef"]:
        ref = current["roleRef"]
        raise RoleRefDrift(f"{obj['kind']} {obj['metadata']['name']} exists and refers to {ref['kind']} {ref['name']}, "
                           f"not {obj['roleRef']['kind']} {obj['roleRef']['name']}: a roleRef cannot change, so it "
                           f"is left alone; choose another binding name, or delete that binding first")


def _need(verb: str, obj: dict) -> tuple[str, str, str, str]:
    namespace = obj["metadata"].get("namespace", "") if obj["kind"] in ("Role", "RoleBinding") else ""
    return verb, f"{PLURAL[obj['kind']]}.{RBAC_GROUP}", namespace, "" if verb == "create" else obj["metadata"]["name"]


def apply(plan: Plan, obj: dict) -> str | None:
    """Make ``obj`` exist as given, as a step of ``plan``: created (deleted at clean-up); kept when one of
    that name is already right; else backed up, replaced, and restored at clean-up."""
    return apply_objects(plan, [obj])[0]


def apply_objects(plan: Plan, objects: list[dict]) -> list[str | None]:
    """:func:`apply` for each object, after one check that the run's credential may write them all."""
    if require(plan, "rbac", [_need("get", o) for o in objects]):
        return [None] * len(objects)  # a dry run: the table says where the run would stop
    current = [objects_of(plan.api).get(Ref.of(o)) for o in objects]
    for now, obj in zip(current, objects):
        _check_role_ref(now, obj)
    changing = [(now, obj) for now, obj in zip(current, objects) if now is None or not _same(now, obj)]
    if require(plan, "rbac", [_need("create" if now is None else "update", obj) for now, obj in changing]):
        return [None] * len(objects)
    results = []
    for now, obj in zip(current, objects):
        kind, name = obj["kind"], obj["metadata"]["name"]
        step, command = f"{kind.lower()}-{name}", f"kubectl apply -f {kind.lower()}-{name}.yaml"
        if now is None:
            results.append(plan.create(obj, step=step, command=command))
        elif _same(now, obj):  # no write at all: a create would need the right to create, even to be told 409
            results.append(plan.step(step, f"keep {Ref.of(obj)}: it already grants {describe(obj)}",
                                     lambda: "kept", command=command, touches=[Ref.of(obj)]))
        else:
            results.append(plan.apply(obj, step=step, command=command,
                                      description=f"back up {Ref.of(obj)} and replace its {_field(obj)} with "
                                                  f"{describe(obj)} (restored at clean-up)"))
    return results


def create_namespace(plan: Plan, name: str) -> str | None:
    """A namespace for the run's objects: created if missing (deleted at clean-up), used as it is otherwise."""
    ref = Ref("Namespace", name)
    if require(plan, f"namespace-{name}", [("get", "namespaces", "", name)]):
        return None
    if objects_of(plan.api).get(ref) is not None:  # not even a create call: a namespace admin may not create one
        return plan.step(f"namespace-{name}", f"use namespace {name} (it exists: kept as it is)", lambda: "exists",
                         touches=[ref])
    if require(plan, f"namespace-{name}", [("create", "namespaces", "", "")]):
        return None
    return plan.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                       step=f"namespace-{name}", command=f"kubectl create namespace {name}")


# Library use without a plan (callers that have none yet, tests). Never edits an object in place.
def _call(api, obj: dict, index: int, *args):
    methods = {"Role": ("create_namespaced_role", "delete_namespaced_role"),
               "ClusterRole": ("create_cluster_role", "delete_cluster_role"),
               "RoleBinding": ("create_namespaced_role_binding", "delete_namespaced_role_binding"),
               "ClusterRoleBinding": ("create_cluster_role_binding", "delete_cluster_role_binding")}
    method = getattr(client.RbacAuthorizationV1Api(api), methods[obj["kind"]][index])
    namespace = obj["metadata"].get("namespace")
    name_args = (obj["metadata"]["name"],) if index else ()
    return method(*name_args, *((namespace,) if namespace else ()), *args)


def apply_all(api: client.ApiClient, objects: list[dict]) -> str:
    """Create each object, or keep one that is already right; one that exists otherwise is refused
    (:class:`ObjectDrift`), never edited in place. A one-line summary (``Role/pod-reader created, ...``)."""
    results = []
    for obj in objects:
        try:
            _call(api, obj, 0, obj)
            results.append(f"{obj['kind']}/{obj['metadata']['name']} created")
            continue
        except ApiException as exc:
            if exc.status != 409:
                raise
        current = objects_of(api).get(Ref.of(obj))
        _check_role_ref(current, obj)
        if current is not None and not _same(current, obj):
            raise ObjectDrift(f"{obj['kind']} {obj['metadata']['name']} exists with other {_field(obj)}; it was "
                              f"not changed (apply it as a plan step to back it up and replace it)")
        results.append(f"{obj['kind']}/{obj['metadata']['name']} unchanged")
    return ", ".join(results)


def delete(api: client.ApiClient, obj: dict) -> bool:
    """Delete ``obj`` if it exists (tests, and callers removing what they made). True if it was there."""
    try:
        _call(api, obj, 1)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def ensure_namespace(api: client.ApiClient, name: str) -> str:
    return create_or_keep(client.CoreV1Api(api).create_namespace, {"metadata": {"name": name}})


def describe(obj: dict) -> str:
    """What a role or binding grants, in one line: its rules, or its roleRef → subjects."""
    if "rules" in obj:
        return "; ".join(_rule_text(r) for r in obj["rules"]) or "no rules"
    namespace = obj["metadata"].get("namespace", "")
    return f"{obj['roleRef']['kind']}/{obj['roleRef']['name']} → " + \
        ", ".join(str(Subject.from_rbac(s, binding_namespace=namespace)) for s in obj.get("subjects") or [])


def show(objects: list[dict]) -> pd.DataFrame:
    """Objects as a table: kind, namespace, name, rules or roleRef + subjects (what `kubectl describe` shows)."""
    rows = [{"kind": o["kind"], "namespace": o["metadata"].get("namespace", ""), "name": o["metadata"]["name"],
             "grants": describe(o)} for o in objects]
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


def who_can(api: client.ApiClient, verb: str, resource: str, *, namespace: str = "", all_namespaces: bool = False,
            all_bindings: pd.DataFrame | None = None, workers: int = 8) -> pd.DataFrame:
    """Every subject named in a binding, plus ``Group:system:masters``, that may VERB RESOURCE.

    Each candidate is asked as itself alone (no ``system:authenticated``), so the answer says
    which subject holds the permission; the reason names the binding (or the built-in rule).
    A grant to ``Group:system:authenticated`` reaches every signed-in user.
    """
    from concurrent.futures import ThreadPoolExecutor
    namespace = "" if all_namespaces else namespace
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


def admins_by_scope(admins: pd.DataFrame) -> pd.DataFrame:
    """How many subjects and bindings are admin, per scope (cluster, or each namespace)."""
    counts = admins.groupby("scope").agg(subjects=("subject", "nunique"), bindings=("binding", "nunique"))
    return named(counts.reset_index(), "admins-by-scope", key=["scope"])


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
    return named(out, "cluster-admins", key=["subject", "binding", "scope"])  # `kubebook diff` matches rows by these
