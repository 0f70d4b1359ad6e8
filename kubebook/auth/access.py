"""Can SUBJECT VERB RESOURCE? Asked of the apiserver itself with SubjectAccessReview.

Nothing here re-implements RBAC: every answer is the authorizer chain's own (Node, RBAC, and
the built-in ``system:masters`` group), with the reason it gives, which names the binding.

    matrix(api, ["User:luffy-admin", "ServiceAccount:luffy:luffy-pods-admin"],
           ["pods", "deployments.apps", "secrets"], ["get", "list", "create"], namespace="luffy")
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from kubernetes import client

from ..errors import KubebookError
from ..safety import mask_text
from .subjects import MASTERS, Subject, parse_all

DEFAULT_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@dataclass(frozen=True)
class Resource:
    """``pods``, ``deployments.apps``, ``pods/log``, ``nodes/status`` or ``*`` (``*.*``: every group)."""

    resource: str
    group: str = ""
    subresource: str = ""

    @classmethod
    def parse(cls, text: "str | Resource") -> "Resource":
        if isinstance(text, Resource):
            return text
        base, _, subresource = text.strip().partition("/")
        resource, _, group = base.partition(".")
        return cls(resource, group, subresource)

    def __str__(self) -> str:
        return self.resource + (f".{self.group}" if self.group else "") + \
            (f"/{self.subresource}" if self.subresource else "")

    def attributes(self, verb: str, namespace: str = "", name: str = "", field_selector: str = "") -> dict:
        attrs = {"verb": verb, "resource": self.resource, "group": self.group}
        if field_selector:  # authorizers that look at selectors (the Node authorizer) see it
            attrs["fieldSelector"] = {"rawSelector": field_selector}
        if self.subresource:
            attrs["subresource"] = self.subresource
        if namespace:
            attrs["namespace"] = namespace
        if name:
            attrs["name"] = name
        return attrs


def names(texts) -> list[str]:
    """A list, or a comma-separated string, as a list of names."""
    if isinstance(texts, str):
        texts = texts.split(",")
    return [str(t).strip() for t in texts if str(t).strip()]


def _resources(texts) -> list[Resource]:
    return [Resource.parse(t) for t in (names(texts) if isinstance(texts, str) else texts)]


def review_body(subject: Subject, verb: str, resource: Resource, *, namespace: str = "", name: str = "",
                field_selector: str = "", authenticated: bool = True) -> dict:
    spec = {"resourceAttributes": resource.attributes(verb, namespace, name, field_selector),
            "groups": subject.groups(authenticated=authenticated)}
    if subject.username:
        spec["user"] = subject.username
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def explain(status: dict, subject: Subject, groups: list[str]) -> str:
    """The authorizer's reason, or which built-in rule decided when it gave none."""
    reason = status.get("reason") or ""
    if reason:
        return reason
    if status.get("allowed") and MASTERS in groups:
        return f"{MASTERS}: every permission, built into the apiserver (no binding needed)"
    if status.get("allowed") and subject.username.startswith("system:node:"):
        return "Node authorizer"
    return "no RBAC rule allows it" if not status.get("allowed") else ""


def request(api: client.ApiClient, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One raw API request with ``api``'s credentials: (HTTP status, JSON body). Errors are returned, not raised.

    The JSON is read as is, without building typed models: that keeps the client's share of a
    SubjectAccessReview small, which matters when thousands are asked.
    """
    headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if body is not None else {})}
    method, url, headers, body, _ = api.param_serialize(method, path, header_params=headers, body=body,
                                                        auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers, body=body)
    data = response.read()
    try:
        return response.status, json.loads(data) if data else {}
    except ValueError:
        return response.status, {"message": data[:200].decode(errors="replace")}


class _Reviewer:
    """Posts SubjectAccessReviews on ``api``'s connection pool with headers prepared once.

    A review is tiny and the apiserver answers it in about a millisecond, so the client's own
    work per request (serialising, headers, models) would otherwise be most of the cost.
    """

    def __init__(self, api: client.ApiClient):
        _, self.url, self.headers, _, _ = api.param_serialize(
            "POST", SAR_PATH, header_params={"Accept": "application/json", "Content-Type": "application/json"},
            auth_settings=["BearerToken"])
        self.pool = api.rest_client.pool_manager

    def __call__(self, body: dict) -> dict:
        response = self.pool.request("POST", self.url, body=json.dumps(body).encode(), headers=self.headers)
        answer = json.loads(response.data)
        if response.status not in (200, 201):
            raise client.ApiException(status=response.status, reason=answer.get("message", ""))
        return answer.get("status", {})


def can(api: "client.ApiClient | _Reviewer", subject: "str | Subject", verb: str, resource: "str | Resource", *,
        namespace: str = "", name: str = "", field_selector: str = "", authenticated: bool = True) -> dict:
    """One check, as a row: subject, verb, resource, namespace, allowed, reason."""
    subject, resource = Subject.parse(subject), Resource.parse(resource)
    body = review_body(subject, verb, resource, namespace=namespace, name=name, field_selector=field_selector,
                       authenticated=authenticated)
    status = (api if isinstance(api, _Reviewer) else _Reviewer(api))(body)
    return {"subject": str(subject), "verb": verb, "resource": str(resource), "namespace": namespace or "*",
            "name": name, "allowed": bool(status.get("allowed")), "denied": bool(status.get("denied")),
            "reason": mask_text(explain(status, subject, body["spec"]["groups"]))}


_SCOPES: dict[tuple[str, str], dict[str, bool]] = {}  # (server, API group) -> {resource: namespaced}


def namespaced(api: client.ApiClient, resource: Resource) -> bool | None:
    """Whether ``resource`` lives in namespaces, from API discovery (None when unknown, e.g. ``*``)."""
    if resource.resource == "*" or resource.group == "*":
        return None
    key = (api.configuration.host, resource.group)
    if key not in _SCOPES:
        path = "/api/v1"
        if resource.group:
            code, group = request(api, "GET", f"/apis/{resource.group}")
            version = (group.get("preferredVersion") or {}).get("groupVersion") if code == 200 else None
            path = f"/apis/{version}" if version else ""
        code, listing = request(api, "GET", path) if path else (404, {})
        _SCOPES[key] = {r["name"]: r.get("namespaced", False) for r in listing.get("resources", [])} if code == 200 else {}
    return _SCOPES[key].get(resource.resource)


def checks(api: client.ApiClient, subjects, resources, verbs=DEFAULT_VERBS, *, namespace: str = "",
           all_namespaces: bool = False, workers: int = 8, authenticated: bool = True) -> pd.DataFrame:
    """Every subject × resource × verb as one row each (long form), ``workers`` reviews at a time.

    ``namespace`` "" (or ``all_namespaces``, kubectl's ``-A``) asks cluster-wide; cluster-scoped resources (nodes,
    namespaces...) are always asked cluster-wide, as a real request for them would be.
    ``workers=1`` asks one by one. On a small machine the apiserver shares the CPUs with this
    client, so a few workers do better than many; keep ``workers`` within the client's connection
    pool (``connection_pool_maxsize``, 5 per CPU by default), or connections are reopened.
    """
    resources = _resources(resources)
    namespace = "" if all_namespaces else namespace
    where = {r: ("" if namespaced(api, r) is False else namespace) for r in resources} if namespace else {}
    grid = [(s, v, r) for s in parse_all(subjects) for r in resources for v in names(verbs)]
    reviewer = _Reviewer(api)
    ask = lambda cell: can(reviewer, cell[0], cell[1], cell[2], namespace=where.get(cell[2], ""),
                           authenticated=authenticated)
    if workers <= 1:
        rows = [ask(cell) for cell in grid]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(ask, grid))
    return pd.DataFrame(rows, columns=["subject", "verb", "resource", "namespace", "name", "allowed", "denied",
                                       "reason"])


def matrix(api: client.ApiClient, subjects, resources, verbs=DEFAULT_VERBS, *, namespace: str = "",
           all_namespaces: bool = False, workers: int = 8) -> pd.DataFrame:
    """The access matrix: one row per subject and resource, one column per verb, ✓ or ·."""
    return pivot(checks(api, subjects, resources, verbs, namespace=namespace, all_namespaces=all_namespaces,
                        workers=workers))


def grants(long: pd.DataFrame) -> pd.DataFrame:
    """Who is allowed anything in ``long`` (checks), and by which binding: one row per subject and reason."""
    allowed = long[long["allowed"]]
    return allowed.drop_duplicates(["subject", "reason"])[["subject", "reason"]].reset_index(drop=True)


def pivot(long: pd.DataFrame) -> pd.DataFrame:
    """Long-form checks as a matrix (subject, resource) × verb, keeping the order they were asked in."""
    if long.empty:
        return pd.DataFrame()
    table = long.assign(cell=long["allowed"].map({True: "✓", False: "·"})).pivot_table(
        index=["subject", "resource"], columns="verb", values="cell", aggfunc="first", sort=False)
    table = table[list(dict.fromkeys(long["verb"]))]
    table.columns.name = None
    return table


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    """``fn(*args, **kwargs)`` and how many seconds it took (for the benchmark and the runbooks)."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def probe(api: client.ApiClient, paths) -> pd.DataFrame:
    """GET each API path with ``api``'s own credentials, as the course does with curl: status and message.

    The message is the apiserver's (for a 403, who was refused what); nothing of the credential.
    """
    rows = []
    for path in ([paths] if isinstance(paths, str) else paths):
        code, body = request(api, "GET", path)
        ok = 200 <= code < 300
        message = (f"{body.get('kind', '')}: {len(body.get('items') or [])} items" if "items" in body
                   else body.get("kind", "")) if ok else body.get("message", "")
        rows.append({"GET": path, "status": code, "allowed": ok, "message": mask_text(str(message))})
    return pd.DataFrame(rows, columns=["GET", "status", "allowed", "message"])


def whoami(api: client.ApiClient) -> pd.DataFrame:
    """Who the apiserver takes ``api``'s credential to be (SelfSubjectReview, `kubectl auth whoami`)."""
    code, body = request(api, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                         {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    status = body.get("status")  # on 401/403 the body is a Status whose "status" is the string "Failure"
    info = (status.get("userInfo") or {}) if isinstance(status, dict) else {}
    return pd.DataFrame([{"status": code, "user": info.get("username", ""),
                          "groups": ", ".join(info.get("groups") or []),
                          "message": "" if code == 201 else mask_text(str(body.get("message", "")))}])


def wait_allowed(api: client.ApiClient, subject: "str | Subject", verb: str, resource: "str | Resource", *,
                 namespace: str = "", name: str = "", allowed: bool = True, timeout: float = 30.0) -> dict:
    """Ask until the answer is ``allowed`` (a new binding reaches the authorizer's cache in moments).

    There is no watch on authorization decisions, so this asks again with a growing pause;
    it raises after ``timeout`` seconds with the last reason.
    """
    from ..waits import WaitTimeout
    deadline, pause = time.monotonic() + timeout, 0.02
    while True:
        row = can(api, subject, verb, resource, namespace=namespace, name=name)
        if row["allowed"] == allowed:
            return row
        if time.monotonic() > deadline:
            raise WaitTimeout(f"{subject} still {'not ' if allowed else ''}allowed to {verb} {resource} "
                              f"after {timeout:.0f}s: {row['reason']}")
        time.sleep(pause)  # no watch exists for authorizer decisions
        pause = min(pause * 2, 0.5)


def across(api: client.ApiClient, subjects, resources, verbs, *, namespaces, workers: int = 8) -> pd.DataFrame:
    """The matrix for several namespaces side by side: columns (namespace, verb)."""
    long = pd.concat([checks(api, subjects, resources, verbs, namespace=ns, workers=workers)
                      for ns in names(namespaces)], ignore_index=True)
    table = long.assign(cell=long["allowed"].map({True: "✓", False: "·"})).pivot_table(
        index=["subject", "resource"], columns=["namespace", "verb"], values="cell", aggfunc="first", sort=False)
    return table


def _impersonation(subject: Subject) -> dict:
    """Headers that make a request as ``subject`` (what `kubectl --as/--as-group` sends)."""
    if subject.kind == "Group":
        return {"Impersonate-User": "kubebook:impersonated-member", "Impersonate-Group": subject.name}
    if len(subject.member_of) > 1:
        raise ValueError(f"{subject}: impersonating more than one extra group is not supported")
    headers = {"Impersonate-User": subject.username}
    if subject.member_of:
        headers["Impersonate-Group"] = subject.member_of[0]
    return headers


def as_subject(api: client.ApiClient, subject: "str | Subject", method: str, path: str,
               body: dict | None = None) -> tuple[int, dict]:
    """A request made as ``subject`` through impersonation (the caller needs the ``impersonate`` verb)."""
    subject = Subject.parse(subject)
    headers = {"Accept": "application/json", **_impersonation(subject),
               **({"Content-Type": "application/json"} if body is not None else {})}
    method, url, headers, body, _ = api.param_serialize(method, path, header_params=headers, body=body,
                                                        auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers, body=body)
    data = response.read()
    return response.status, (json.loads(data) if data else {})


def _list_path(resource: Resource, namespace: str) -> str:
    base = f"/apis/{resource.group}/v1" if resource.group else "/api/v1"
    return f"{base}/namespaces/{namespace}/{resource.resource}" if namespace else f"{base}/{resource.resource}"


def verify(api: client.ApiClient, long: pd.DataFrame, *, sample: int = 0) -> pd.DataFrame:
    """Re-ask cells of a matrix another way, as the subject itself, through impersonation.

    Each cell is asked with a SelfSubjectAccessReview made *as* the subject (what
    `kubectl auth can-i VERB RESOURCE --as SUBJECT` does); ``list`` cells also make the real
    request (a 403 or not). ``sample`` > 0 takes that many allowed and that many denied cells (the same ones each run);
    0 checks every cell. ``agrees`` must be true on every row.
    """
    allowed, denied = long[long["allowed"]], long[~long["allowed"]]
    rows = long if not sample else pd.concat([allowed.sample(min(sample, len(allowed)), random_state=0),
                                             denied.sample(min(sample, len(denied)), random_state=0)])
    out = []
    for _, cell in rows.iterrows():
        subject, resource = Subject.parse(cell["subject"]), Resource.parse(cell["resource"])
        namespace = "" if cell["namespace"] == "*" else cell["namespace"]
        code, answer = as_subject(api, subject, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                  {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                   "spec": {"resourceAttributes": resource.attributes(cell["verb"], namespace)}})
        can_i = bool((answer.get("status") or {}).get("allowed"))
        real = ""
        if cell["verb"] == "list" and not resource.subresource and resource.resource != "*":
            status, _ = as_subject(api, subject, "GET", _list_path(resource, namespace))
            real = status
        agrees = can_i == cell["allowed"] and (real == "" or (real != 403) == cell["allowed"])
        out.append({"subject": cell["subject"], "verb": cell["verb"], "resource": cell["resource"],
                    "namespace": cell["namespace"], "matrix": cell["allowed"], "can-i --as": can_i,
                    "real request": real, "agrees": agrees})
    return pd.DataFrame(out, columns=["subject", "verb", "resource", "namespace", "matrix", "can-i --as",
                                      "real request", "agrees"])


def verified(api: client.ApiClient, long: pd.DataFrame, *, sample: int = 0) -> pd.DataFrame:
    """:func:`verify`, and an error naming the cells where the two ways of asking disagree."""
    table = verify(api, long, sample=sample)
    wrong = table[~table["agrees"]]
    if len(wrong):
        cells = ", ".join(f"{r.subject} {r.verb} {r.resource}" for r in wrong.itertuples())
        raise KubebookError(f"{len(wrong)} of {len(table)} cells disagree when asked as the subject: {cells}")
    return table


# ---- the run's own credential ------------------------------------------------------------------
class Forbidden(KubebookError):
    """RBAC refuses one of this run's own steps to the credential the run uses."""


def self_review(api: client.ApiClient, verb: str, resource: "str | Resource", *, namespace: str = "",
                name: str = "") -> dict:
    """May ``api``'s own credential VERB RESOURCE? (a SelfSubjectAccessReview: `kubectl auth can-i`)."""
    resource = Resource.parse(resource)
    code, body = request(api, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                         {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                          "spec": {"resourceAttributes": resource.attributes(verb, namespace, name)}})
    status = body.get("status") if isinstance(body.get("status"), dict) else {}
    return {"allowed": code == 201 and bool(status.get("allowed")),
            "reason": mask_text(str(status.get("reason") or body.get("message") or ""))}


def user_name(api: client.ApiClient) -> str:
    """Who the apiserver takes ``api``'s credential to be, as its messages name it (``User "x"``)."""
    row = whoami(api).iloc[0]
    return f'User "{row["user"]}"' if row["user"] else "this credential"


def _need_text(verb: str, resource: str, namespace: str, name: str) -> str:
    what = f"{verb} {resource}" + (f" {name}" if name else "")
    return what + (f" in namespace {namespace}" if namespace else " (cluster-wide)")


def require(plan, step: str, needs: list[tuple[str, str, str, str]]) -> list[str]:
    """Before ``step`` changes anything, ask whether the run's own credential may do each of ``needs``
    (verb, resource[.group][/subresource], namespace, name), and say plainly what RBAC refuses.

    A dry run lists the refusal as the step where the run would stop; acting raises :class:`Forbidden`
    before the step, so nothing is left half-done by it. Returns the refused needs, described."""
    refused = [_need_text(*need) for need in needs if not self_review(plan.api, need[0], need[1],
                                                                      namespace=need[2], name=need[3])["allowed"]]
    if not refused:
        return []
    message = (f"RBAC refuses step {step} to {user_name(plan.api)}: it may not {'; '.join(refused)}. Run with a "
               f"kubeconfig that may (an admin's), or ask an admin for these permissions; this step changed nothing")
    if plan.acting:
        raise Forbidden(message)
    plan.step(f"{step}-refused", f"stop here: {message}")
    return refused


def wait_effective(plan, subject: "str | Subject", verb: str, resource: "str | Resource", *, namespace: str = "",
                   timeout: float = 30.0) -> str | None:
    """A plan step: wait until the authorizer allows ``subject`` what a new binding grants it."""
    where = f"in namespace {namespace}" if namespace else "cluster-wide"
    if require(plan, "effective", [("create", "subjectaccessreviews.authorization.k8s.io", "", "")]):
        return None
    return plan.wait("effective", f"{subject} may {verb} {resource} {where} (the authorizer has seen the binding)",
                     lambda: wait_allowed(plan.api, subject, verb, resource, namespace=namespace,
                                          timeout=timeout)["reason"])


def kubectl(kubeconfig: "str | os.PathLike", *args: str, context: str = "") -> pd.DataFrame:
    """Run the kubectl binary with ``kubeconfig`` (the lab's build, else the one on PATH): exit code and
    the first line of its answer, e.g. ``Error from server (Forbidden): ...``."""
    import subprocess
    from pathlib import Path
    from .. import binaries
    exe = binaries.find("kubectl")
    command = [str(exe or "kubectl"), f"--kubeconfig={kubeconfig}", *([f"--context={context}"] if context else []),
               *args]
    shown = "kubectl " + " ".join(args)
    if not Path(kubeconfig).expanduser().is_file():
        return pd.DataFrame([{"command": shown, "exit code": None, "answer": f"no kubeconfig at {kubeconfig} yet"}])
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    lines = [l for l in (done.stdout + done.stderr).splitlines() if l.strip()]
    return pd.DataFrame([{"command": shown, "exit code": done.returncode,
                          "answer": mask_text(lines[0] if lines else "")[:300]}])
