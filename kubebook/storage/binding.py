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
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError
from ..scheduling.explain import label_selector_matches, quantity
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


def agreement(predicted: str | None, bound_claim: dict) -> pd.DataFrame:
    """Our predicted PV beside the one the PV controller bound the claim to."""
    chosen = (bound_claim.get("spec") or {}).get("volumeName") or ""
    return pd.DataFrame([{"claim": f"{bound_claim['metadata']['namespace']}/{bound_claim['metadata']['name']}",
                          "kubebook predicted": predicted or "(none fits)", "PV controller bound": chosen or "(none)",
                          "agree": (predicted or "") == chosen}])


# ---- the demo: one broken rule per PV ------------------------------------------------------------------

DEMO_LABELS = {"app": "mysql"}


def demo_claim(name: str, request: str = "1Gi") -> dict:
    """A claim for ``request``, ReadWriteMany, no class, selecting PVs labelled app=mysql."""
    return volumes.claim(name, request, ["ReadWriteMany"], storage_class="",
                         selector={"matchLabels": dict(DEMO_LABELS)})


def demo_volumes(namespace: str, claim_name: str, request: str = "1Gi") -> list[dict]:
    """PVs that each break exactly one rule for :func:`demo_claim` (named after the rule)."""
    half = f"{max(1, quantity(request) // 2 ** 21)}Mi"  # half the request, in MiB
    base = dict(labels=DEMO_LABELS)
    src = "/tmp/kubebook-storage/why"
    return [
        volumes.persistent_volume(f"{claim_name}-too-small", half, ["ReadWriteMany"], host_path=f"{src}/1", **base),
        volumes.persistent_volume(f"{claim_name}-rwo-only", request, ["ReadWriteOnce"], host_path=f"{src}/2", **base),
        volumes.persistent_volume(f"{claim_name}-has-class", request, ["ReadWriteMany"], host_path=f"{src}/3",
                                  storage_class="slow", **base),
        volumes.persistent_volume(f"{claim_name}-wrong-label", request, ["ReadWriteMany"], host_path=f"{src}/4",
                                  labels={"app": "redis"}),
        volumes.persistent_volume(f"{claim_name}-block", request, ["ReadWriteMany"], host_path=f"{src}/5",
                                  volume_mode="Block", **base),
        volumes.persistent_volume(f"{claim_name}-reserved", request, ["ReadWriteMany"], host_path=f"{src}/6",
                                  claim_ref=(namespace, f"{claim_name}-other"), **base),
    ]


def fitting_volume(namespace: str, claim_name: str, request: str = "1Gi") -> dict:
    """A PV that passes every rule for :func:`demo_claim`."""
    return volumes.persistent_volume(f"{claim_name}-fits", request, ["ReadWriteMany", "ReadWriteOnce"],
                                     host_path="/tmp/kubebook-storage/why/fits", labels=DEMO_LABELS)
