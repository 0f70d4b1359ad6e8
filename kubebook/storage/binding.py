"""Why a PersistentVolumeClaim is Pending: the PV controller's matching rules recomputed on API dicts.

    why = why_pending(api, "luffy-storage", "pvc-nfs")
    why.table            # every PV × check, the failing reason in each cell ("ok" where it passes)
    why.side_by_side()   # our verdict beside the claim's phase and its own events

The rules follow kube-controller-manager's binder (``FindMatchingVolume`` and
``checkVolumeSatisfyClaim`` in k8s.io/component-helpers/storage/volume):

- a claim that names a PV (``spec.volumeName``) gets that PV if it is big enough, of the same class,
  volumeMode and access modes, and not claimed by someone else; label selector and phase do not matter;
- a PV whose ``claimRef`` names the claim (pre-bound by an admin) is taken regardless of phase,
  selector and class — capacity, volumeMode and access modes still count;
- otherwise the PV must be Available, match the claim's selector and class, be at least as big as the
  request, offer every requested access mode and the same volumeMode; among those the smallest wins,
  looking first at PVs with the fewest access modes.

Pure functions take dicts (as the API returns them); :func:`why_pending` reads the live objects.
:func:`blocked_reason` turns the same rules into a wait's diagnosis: a claim no PV fits and that
nothing will provision (no class, no default class, a class without a provisioner, an external
provisioner that never answers) is reported in one line within seconds instead of a timeout.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError
from ..objects import Ref
from ..plan import Plan
from ..quantities import quantity
from ..selectors import label_selector_matches
from ..waits import wait_for
from . import volumes

# the annotation that predates spec.storageClassName; the binder still reads it first
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
CHECKS = ["storageClassName", "capacity", "accessModes", "volumeMode", "selector", "claimRef/volumeName", "phase"]
OK = "ok"


def claim_class(pvc: dict) -> str:
    """The class the binder matches on: the beta annotation, else spec.storageClassName, else ""."""
    annotations = pvc["metadata"].get("annotations") or {}
    if BETA_CLASS_ANNOTATION in annotations:
        return annotations[BETA_CLASS_ANNOTATION]
    return (pvc.get("spec") or {}).get("storageClassName") or ""


def volume_class(pv: dict) -> str:
    annotations = pv["metadata"].get("annotations") or {}
    if BETA_CLASS_ANNOTATION in annotations:
        return annotations[BETA_CLASS_ANNOTATION]
    return (pv.get("spec") or {}).get("storageClassName") or ""


def requested_bytes(pvc: dict) -> int:
    storage = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        raise KubebookError(f"claim {pvc['metadata'].get('name')!r} requests no storage (spec.resources.requests)")
    return quantity(storage)


def capacity_bytes(pv: dict) -> int:
    return quantity(((pv.get("spec") or {}).get("capacity") or {}).get("storage", 0))


def _mode(spec: dict) -> str:
    return spec.get("volumeMode") or "Filesystem"  # unset means Filesystem on both sides


def bound_to_claim(pv: dict, pvc: dict) -> bool:
    """The PV's claimRef names this claim (and, when it carries a uid, this very object)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    meta = pvc["metadata"]
    if not ref or ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def _describe_ref(ref: dict) -> str:
    return f"{ref.get('namespace')}/{ref.get('name')}" + (" (an older claim of that name)" if ref.get("uid") else "")


def check_volume(pv: dict, pvc: dict) -> dict[str, str]:
    """Each check of ``pv`` for ``pvc``: ``"ok"``, a failing reason, or ``"not checked: ..."``.

    Which checks apply depends on how the claim and PV are tied (volumeName, claimRef), as in the binder.
    """
    pv_spec, pvc_spec = pv.get("spec") or {}, pvc.get("spec") or {}
    name = pv["metadata"]["name"]
    cells: dict[str, str] = {}

    want_class, have_class = claim_class(pvc), volume_class(pv)
    cells["storageClassName"] = OK if want_class == have_class else \
        f"PV class {have_class or '(none)'!r} ≠ claim's {want_class or '(none)'!r}"

    want, have = requested_bytes(pvc), capacity_bytes(pv)
    cells["capacity"] = OK if have >= want else \
        f"{pv_spec.get('capacity', {}).get('storage', '0')} < requested " \
        f"{pvc_spec['resources']['requests']['storage']}"

    missing = [m for m in pvc_spec.get("accessModes") or [] if m not in (pv_spec.get("accessModes") or [])]
    cells["accessModes"] = OK if not missing else f"lacks {', '.join(missing)}"

    cells["volumeMode"] = OK if _mode(pv_spec) == _mode(pvc_spec) else \
        f"PV {_mode(pv_spec)} ≠ claim's {_mode(pvc_spec)}"

    selector = pvc_spec.get("selector")
    labels = pv["metadata"].get("labels") or {}
    cells["selector"] = OK if selector is None or label_selector_matches(selector, labels) else \
        f"labels {labels or '{}'} not selected"

    ref = pv_spec.get("claimRef")
    named = pvc_spec.get("volumeName") or ""
    if ref and not bound_to_claim(pv, pvc):
        cells["claimRef/volumeName"] = f"claimed by {_describe_ref(ref)}"
    elif named and named != name:
        cells["claimRef/volumeName"] = f"claim asks for PV {named!r}"
    else:
        cells["claimRef/volumeName"] = OK

    phase = (pv.get("status") or {}).get("phase") or "Pending"
    if pv["metadata"].get("deletionTimestamp"):
        cells["phase"] = "being deleted"
    else:
        cells["phase"] = OK if phase == "Available" else f"{phase}, not Available"

    skipped = []
    if named == name and ref and bound_to_claim(pv, pvc):
        skipped = list(CHECKS)  # both sides already name each other: the binder only completes the bind
        reason = "not checked: claim and PV name each other"
    elif named == name:
        skipped = ["selector", "phase"]  # checkVolumeSatisfyClaim looks at neither
        reason = "not checked: the claim names this PV"
    elif ref and bound_to_claim(pv, pvc):
        skipped = ["storageClassName", "selector", "phase"]  # a pre-bound PV is returned before these filters
        reason = "not checked: the PV is pre-bound to this claim"
    for check in skipped:
        if cells[check] != OK:
            cells[check] = reason
    if skipped and pv["metadata"].get("deletionTimestamp"):
        cells["phase"] = "being deleted"
    return cells


def fits(cells: dict[str, str]) -> bool:
    return all(v == OK or v.startswith("not checked") for v in cells.values())


def check_rows(pvc: dict, volumes: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for pv in sorted(volumes, key=lambda v: v["metadata"]["name"]):
        cells = check_volume(pv, pvc)
        spec = pv.get("spec") or {}
        rows.append({"pv": pv["metadata"]["name"], "fits": fits(cells), **cells,
                     "_modes": len(spec.get("accessModes") or []), "_bytes": capacity_bytes(pv),
                     "_prebound": bound_to_claim(pv, pvc)})
    return rows


def explain(pvc: dict, volumes: list[dict]) -> pd.DataFrame:
    """PVs × checks for ``pvc``: one row per PV, ``fits`` first, then the reason per check."""
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in check_rows(pvc, volumes)]
    return pd.DataFrame(rows, columns=["pv", "fits", *CHECKS])


def best_match(pvc: dict, volumes: list[dict]) -> str | None:
    """The PV the binder would pick, or None.

    The binder looks at PVs grouped by access-mode set, fewest modes first; in a group a PV
    pre-bound to the claim wins, else the smallest that fits.
    """
    candidates = [r for r in check_rows(pvc, volumes) if r["fits"]]
    if not candidates:
        return None
    named = (pvc.get("spec") or {}).get("volumeName")
    if named:
        return named if any(r["pv"] == named for r in candidates) else None
    best = min(candidates, key=lambda r: (r["_modes"], not r["_prebound"], r["_bytes"], r["pv"]))
    return best["pv"]


def verdict(pvc: dict, volumes: list[dict], storage_classes: list[dict] = ()) -> str:
    """One sentence: which PV the claim binds to, or why it waits."""
    bound = (pvc.get("spec") or {}).get("volumeName")
    phase = (pvc.get("status") or {}).get("phase")
    if phase == "Bound":
        return f"bound to PV {bound}"
    pick = best_match(pvc, volumes)
    if pick:
        return f"binds to PV {pick}"
    wanted = claim_class(pvc)
    classes = {c["metadata"]["name"]: c for c in storage_classes}
    if bound:
        return f"waits for PV {bound}: " + ("it does not exist" if not any(
            v["metadata"]["name"] == bound for v in volumes) else "it does not satisfy the claim (see the table)")
    if wanted and wanted in classes:
        sc = classes[wanted]
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            return f"no PV fits; class {wanted} waits for a Pod using the claim before binding or provisioning"
        if sc.get("provisioner") == "kubernetes.io/no-provisioner":
            return f"no PV fits, and class {wanted} has no provisioner: create a matching PV"
        return f"no PV fits; class {wanted} asks {sc.get('provisioner')} to provision one"
    if wanted:
        return f"no PV fits, and StorageClass {wanted!r} does not exist, so nothing will provision one"
    return "no PV fits and the claim has no class, so nothing will provision one: create a matching PV"


# ---- live objects ----------------------------------------------------------------------------------


@dataclass
class WhyPending:
    claim: dict
    volumes: list[dict]
    storage_classes: list[dict]
    events: pd.DataFrame
    table: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.table = explain(self.claim, self.volumes)

    @property
    def phase(self) -> str:
        return (self.claim.get("status") or {}).get("phase") or "Pending"

    @property
    def expected(self) -> str | None:
        """The PV our rules say the claim binds to (None: it stays Pending on existing PVs)."""
        return best_match(self.claim, self.volumes)

    @property
    def verdict(self) -> str:
        return verdict(self.claim, self.volumes, self.storage_classes)

    def side_by_side(self) -> pd.DataFrame:
        last = self.events.iloc[-1] if len(self.events) else None
        rows = [{"source": "kubebook (recomputed binder rules)", "says": self.verdict},
                {"source": "claim status", "says": self.phase + (
                    f" on {self.claim['spec'].get('volumeName')}" if self.phase == "Bound" else "")},
                {"source": "last claim event", "says": "(none)" if last is None else
                 f"{last['reason']}: {last['message']}"}]
        return pd.DataFrame(rows)


def _raw(api, method: str, *args) -> dict:
    """The API's JSON as is (the client's models would turn absent fields into explicit nulls)."""
    response = getattr(client.CoreV1Api(api), method)(*args, _preload_content=False)
    return json.loads(response.data)


def claim_events(api, namespace: str, name: str) -> pd.DataFrame:
    """The claim's events, oldest first (FailedBinding, ProvisioningFailed, ExternalProvisioning...)."""
    items = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={name}").items
    rows = [{"last seen": e.last_timestamp or e.event_time or e.metadata.creation_timestamp, "type": e.type,
             "reason": e.reason, "count": e.count or 1, "from": (e.source.component if e.source else "") or
             e.reporting_component or "", "message": e.message} for e in items]
    rows.sort(key=lambda r: str(r["last seen"]))
    return pd.DataFrame(rows, columns=["last seen", "type", "reason", "count", "from", "message"])


def why_pending(api, namespace: str, name: str) -> WhyPending:
    """Read the claim, every PV and every StorageClass, and explain the claim's state."""
    try:
        claim = _raw(api, "read_namespaced_persistent_volume_claim", name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise KubebookError(f"PersistentVolumeClaim {namespace}/{name} not found") from None
        raise
    volumes = _raw(api, "list_persistent_volume")["items"]
    classes = api.sanitize_for_serialization(client.StorageV1Api(api).list_storage_class().items)
    return WhyPending(claim, volumes, classes, claim_events(api, namespace, name))


def pending_claims(api, namespace: str = "") -> pd.DataFrame:
    """Every Pending claim (in ``namespace``, or everywhere) with the verdict for it."""
    core = client.CoreV1Api(api)
    claims = (core.list_namespaced_persistent_volume_claim(namespace) if namespace else
              core.list_persistent_volume_claim_for_all_namespaces()).items
    volumes = _raw(api, "list_persistent_volume")["items"]
    classes = api.sanitize_for_serialization(client.StorageV1Api(api).list_storage_class().items)
    rows = []
    for c in claims:
        if (c.status.phase or "Pending") != "Pending":
            continue
        pvc = api.sanitize_for_serialization(c)
        rows.append({"namespace": c.metadata.namespace, "claim": c.metadata.name, "class": claim_class(pvc),
                     "request": c.spec.resources.requests.get("storage"),
                     "verdict": verdict(pvc, volumes, classes)})
    return pd.DataFrame(rows, columns=["namespace", "claim", "class", "request", "verdict"])


def wait_claim_event(api, namespace: str, name: str, *, timeout: float = 90) -> pd.DataFrame:
    """Watch until the PV controller has recorded an event on the claim (or bound it); returns its events."""
    def said(events: dict[str, dict]) -> bool:
        return any(e.get("involvedObject", {}).get("kind") == "PersistentVolumeClaim" for e in events.values())
    wait_for(api, "events", said, namespace=namespace, field_selector=f"involvedObject.name={name}",
             timeout=timeout, what=f"an event on claim {namespace}/{name}")
    return claim_events(api, namespace, name)


def agreement(predicted: str | None, bound_claim: dict | None) -> pd.DataFrame:
    """Our predicted PV beside the one the PV controller bound the claim to (empty in a dry run)."""
    if bound_claim is None:
        return pd.DataFrame(columns=["claim", "kubebook predicted", "PV controller bound", "agree"])
    chosen = (bound_claim.get("spec") or {}).get("volumeName") or ""
    return pd.DataFrame([{"claim": f"{bound_claim['metadata']['namespace']}/{bound_claim['metadata']['name']}",
                          "kubebook predicted": predicted or "(none fits)", "PV controller bound": chosen or "(none)",
                          "agree": (predicted or "") == chosen}])


# ---- why a wait for Bound cannot succeed -------------------------------------------------------------

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
IN_TREE = "kubernetes.io/"  # provisioners kube-controller-manager runs itself (their failures are events)
PV_CONTROLLER = "persistentvolume-controller"
EXTERNAL_GRACE = 3.0  # seconds an external provisioner gets to pick up a claim it was handed


def _failures(pv: dict, pvc: dict) -> str:
    cells = check_volume(pv, pvc)
    return "; ".join(f"{k} {v}" for k, v in cells.items() if v != OK and not v.startswith("not checked"))


def _no_fit(pvc: dict, volumes_: list[dict]) -> str:
    if not volumes_:
        return "there is no PV at all"
    shown = [f"{pv['metadata']['name']}: {_failures(pv, pvc)}" for pv in sorted(volumes_, key=lambda v: v["metadata"]["name"])]
    more = f"; and {len(shown) - 4} more" if len(shown) > 4 else ""
    return "no PV fits (" + " | ".join(shown[:4]) + more + ")"


def _class_unset(pvc: dict) -> bool:
    return (pvc.get("spec") or {}).get("storageClassName") is None and \
        BETA_CLASS_ANNOTATION not in (pvc["metadata"].get("annotations") or {})


def blocked_reason(pvc: dict, volumes_: list[dict], storage_classes: list[dict], events: list[dict] = (),
                   *, pods_using: int = 0, waited: float = math.inf) -> str | None:
    """Why ``pvc`` cannot become Bound as things are, in one line with what to do; None while it still can.

    ``events`` are the claim's events (dicts with ``reason``, ``message``, ``source``); ``waited``
    is how long ago the PV controller handed the claim to an external provisioner.
    """
    if (pvc.get("status") or {}).get("phase") == "Bound":
        return None
    if pvc["metadata"].get("deletionTimestamp"):
        return "the claim is being deleted"
    if best_match(pvc, volumes_):
        return None  # the binder takes it at its next look
    fresh = [pv for pv in volumes_ if set(k for k, v in check_volume(pv, pvc).items() if v != OK
                                          and not v.startswith("not checked")) == {"phase"}
             and (pv.get("status") or {}).get("phase") in (None, "", "Pending")]
    if fresh:
        return None  # a new PV the controller has not marked Available yet
    named = (pvc.get("spec") or {}).get("volumeName")
    if named:
        pv = next((v for v in volumes_ if v["metadata"]["name"] == named), None)
        if pv is None:
            return f"the claim names PV {named} (volumeName), which does not exist: create it, or leave volumeName out"
        return f"the claim names PV {named}, which does not satisfy it ({_failures(pv, pvc)}): fix the PV or the claim"
    fit = _no_fit(pvc, volumes_)
    classes = {c["metadata"]["name"]: c for c in storage_classes}
    if _class_unset(pvc):
        if any((c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true" for c in storage_classes):
            return None  # the PV controller writes the default class in (retroactive default assignment)
        return (f"{fit}; the claim names no StorageClass and the cluster has no default class, so nothing will "
                "provision one: create a PV that passes every rule, or mark a class as the default")
    wanted = claim_class(pvc)
    if not wanted:
        return (f"{fit}; the claim asks for no class (storageClassName \"\"), so no provisioner is asked: create a PV "
                "that passes every rule")
    sc = classes.get(wanted)
    if sc is None:
        return f"{fit}; StorageClass {wanted!r} does not exist, so nothing will provision one: create it, or a matching PV"
    provisioner = sc.get("provisioner") or ""
    if provisioner == NO_PROVISIONER:
        return f"{fit}; class {wanted} has no provisioner ({NO_PROVISIONER}): create a matching PV"
    if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
        return None if pods_using else (f"class {wanted} provisions only once a Pod uses the claim "
                                        "(volumeBindingMode WaitForFirstConsumer), and no Pod does: start one")
    failed = [e for e in events if e.get("reason") == "ProvisioningFailed"]
    if failed:
        return f"provisioner {provisioner} failed for class {wanted}: {failed[-1].get('message')}"
    if provisioner.startswith(IN_TREE):
        return None  # kube-controller-manager provisions it itself; a failure shows as ProvisioningFailed
    handed = any(e.get("reason") == "ExternalProvisioning" for e in events)
    answered = any(e.get("source") not in (PV_CONTROLLER, "") for e in events)
    if handed and not answered and waited >= EXTERNAL_GRACE:
        return (f"no provisioner answers for class {wanted}: the PV controller handed the claim to the external "
                f"provisioner {provisioner!r} (event ExternalProvisioning) and nothing has picked it up"
                + (f" in {waited:.0f}s" if math.isfinite(waited) else "") + f"; install that provisioner (the "
                f"course's nfs-client-provisioner needs PROVISIONER_NAME {provisioner}) or create a matching PV")
    return None


def _claim_facts(api, namespace: str, name: str) -> tuple[dict, list[dict], list[dict], list[dict], int] | None:
    try:
        pvc = _raw(api, "read_namespaced_persistent_volume_claim", name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    volumes_ = _raw(api, "list_persistent_volume")["items"]
    classes = api.sanitize_for_serialization(client.StorageV1Api(api).list_storage_class().items)
    events = [{"reason": e.reason, "message": e.message, "count": e.count or 1,
               "source": (e.source.component if e.source else "") or e.reporting_component or ""}
              for e in client.CoreV1Api(api).list_namespaced_event(
                  namespace, field_selector=f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={name}").items]
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    using = sum(1 for p in pods for v in p.spec.volumes or []
                if v.persistent_volume_claim and v.persistent_volume_claim.claim_name == name)
    return pvc, volumes_, classes, events, using


def claim_diagnosis(api, namespace: str, name: str) -> Callable[[Any], str | None]:
    """A ``diagnose=`` for waits on the claim (or its PV): :func:`blocked_reason` on the live objects.

    The grace for an external provisioner counts from the first diagnosis that saw the claim handed over."""
    handed_at: dict[str, float] = {}

    def diagnose(_objects: Any = None) -> str | None:
        facts = _claim_facts(api, namespace, name)
        if facts is None:
            return f"claim {namespace}/{name} does not exist"
        pvc, volumes_, classes, events, using = facts
        if any(e["reason"] == "ExternalProvisioning" for e in events):
            handed_at.setdefault("t", time.monotonic())
        waited = time.monotonic() - handed_at["t"] if "t" in handed_at else 0.0
        reason = blocked_reason(pvc, volumes_, classes, events, pods_using=using, waited=waited)
        return f"claim {namespace}/{name} cannot be bound: {reason}" if reason else None

    return diagnose


def blocked(api, namespace: str, name: str) -> str | None:
    """:func:`blocked_reason` for the live claim, once (an external provisioner counts as silent when
    the PV controller has handed the claim over more than once, i.e. across a resync)."""
    facts = _claim_facts(api, namespace, name)
    if facts is None:
        return f"claim {namespace}/{name} does not exist"
    pvc, volumes_, classes, events, using = facts
    handed = [e for e in events if e["reason"] == "ExternalProvisioning"]
    waited = math.inf if handed and max(e["count"] for e in handed) > 1 else 0.0
    return blocked_reason(pvc, volumes_, classes, events, pods_using=using, waited=waited)


# ---- reading a claim in a runbook: None-tolerant views -----------------------------------------------

def explain_claim(api, namespace: str, name: str) -> WhyPending | None:
    """:func:`why_pending` for ``name``, or None when no claim is named (``""``)."""
    return why_pending(api, namespace, name) if name else None


def side_by_side(why: WhyPending | None) -> pd.DataFrame:
    """Our verdict beside the claim's phase and its last event (empty without a claim)."""
    return why.side_by_side() if why is not None else pd.DataFrame(columns=["source", "says"])


def checks(why: WhyPending | None) -> pd.DataFrame:
    """Every PV × binder rule (empty without a claim)."""
    return why.table if why is not None else pd.DataFrame(columns=["pv", "fits", *CHECKS])


def events(why: WhyPending | None) -> pd.DataFrame:
    """The claim's events (empty without a claim)."""
    return why.events if why is not None else pd.DataFrame(
        columns=["last seen", "type", "reason", "count", "from", "message"])


# ---- the demo: one broken rule per PV ------------------------------------------------------------------

# app=mysql as in the course, plus kubebook's own label: the demo claim can never take someone else's PV
DEMO_LABELS = {"app": "mysql", "kubebook.io/demo": "why-pvc-pending"}
BROKEN_RULES = ("too-small", "rwo-only", "has-class", "wrong-label", "block", "reserved")


def demo_claim(name: str, request: str = "1Gi") -> dict:
    """A claim for ``request``, ReadWriteMany, no class, selecting PVs labelled app=mysql (and the demo label)."""
    return volumes.claim(name, request, ["ReadWriteMany"], storage_class="",
                         selector={"matchLabels": dict(DEMO_LABELS)})


def demo_volume_names(claim_name: str) -> list[str]:
    """The demo PVs' names: one per broken rule, then the one that fits."""
    return [f"kubebook-{claim_name}-{rule}" for rule in (*BROKEN_RULES, "fits")]


def demo_scope(claim_name: str) -> list[str]:
    """What a demo plan must name besides its namespace: every demo PV (they are cluster-scoped)."""
    return [Ref("PersistentVolume", n).scope for n in demo_volume_names(claim_name)]


def demo_volumes(namespace: str, claim_name: str, request: str = "1Gi") -> list[dict]:
    """PVs that each break exactly one rule for :func:`demo_claim` (named after the rule)."""
    half = f"{max(1, quantity(request) // 2 ** 21)}Mi"  # half the request, in MiB
    base = dict(labels=DEMO_LABELS)
    src = "/tmp/kubebook-storage/why"
    names = dict(zip(BROKEN_RULES, demo_volume_names(claim_name)))
    return [
        volumes.persistent_volume(names["too-small"], half, ["ReadWriteMany"], host_path=f"{src}/1", **base),
        volumes.persistent_volume(names["rwo-only"], request, ["ReadWriteOnce"], host_path=f"{src}/2", **base),
        volumes.persistent_volume(names["has-class"], request, ["ReadWriteMany"], host_path=f"{src}/3",
                                  storage_class="slow", **base),
        volumes.persistent_volume(names["wrong-label"], request, ["ReadWriteMany"], host_path=f"{src}/4",
                                  labels={**DEMO_LABELS, "app": "redis"}),
        volumes.persistent_volume(names["block"], request, ["ReadWriteMany"], host_path=f"{src}/5",
                                  volume_mode="Block", **base),
        volumes.persistent_volume(names["reserved"], request, ["ReadWriteMany"], host_path=f"{src}/6",
                                  claim_ref=(namespace, f"{claim_name}-other"), **base),
    ]


def fitting_volume(namespace: str, claim_name: str, request: str = "1Gi") -> dict:
    """A PV that passes every rule for :func:`demo_claim`."""
    return volumes.persistent_volume(demo_volume_names(claim_name)[-1], request, ["ReadWriteMany", "ReadWriteOnce"],
                                     host_path="/tmp/kubebook-storage/why/fits", labels=DEMO_LABELS)


def stage_demo(plan: Plan, namespace: str, claim_name: str, request: str = "1Gi", *,
               timeout: float = 90) -> None:
    """Steps: the PVs that each break one rule, the claim none of them fits, and a wait until the PV
    controller has said so in an event on the claim."""
    for pv in demo_volumes(namespace, claim_name, request):
        volumes.apply_volume(plan, pv)
    volumes.apply_claim(plan, namespace, demo_claim(claim_name, request))
    plan.wait(f"event-{claim_name}", f"the PV controller has recorded an event on claim {namespace}/{claim_name}",
              lambda: f"{len(wait_claim_event(plan.api, namespace, claim_name, timeout=timeout))} event(s)")


def check_claim(plan: Plan, namespace: str, name: str) -> WhyPending | None:
    """:func:`why_pending` after the demo's changes, as a check step (None in a dry run)."""
    return plan.check(f"why-{name}", f"every PV against the binder's rules for claim {namespace}/{name}",
                      lambda: why_pending(plan.api, namespace, name))


def add_fitting_volume(plan: Plan, namespace: str, claim_name: str, request: str = "1Gi", *,
                       timeout: float = 90) -> str | None:
    """Create the PV that fits, wait until the controller has seen it, and predict (before the
    controller binds) which PV the claim gets; returns the predicted name (None in a dry run).

    A PV created after the claim alone waits for the controller's next periodic pass over Pending
    claims; :func:`kubebook.storage.volumes.wait_bound` makes it look sooner."""
    pv = fitting_volume(namespace, claim_name, request)
    volumes.apply_volume(plan, pv)
    volumes.wait_available(plan, pv["metadata"]["name"], timeout=timeout)
    return plan.check(f"predict-{claim_name}", f"which PV our rules say claim {namespace}/{claim_name} gets",
                      lambda: why_pending(plan.api, namespace, claim_name).expected or "")
