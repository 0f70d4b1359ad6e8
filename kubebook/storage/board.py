"""The PV/PVC board: every claim and volume, and for a Pending claim the binder rule that blocks each PV.

    claims, volumes = board(api)        # one listing of claims, PVs and StorageClasses
    blocking(api, "luffy-storage", "mysql-data")   # PV × first failing rule, from binding.explain

Built on :mod:`kubebook.storage.binding` (the PV controller's rules recomputed), so the board
says the same as the why-pvc-pending runbook. The demo (a claim and PVs that each break one
rule, then one that fits) is made by plan steps that create what is missing and keep what exists
(``plan.create``); :func:`clean_up_demo` deletes only what a run created:

    plan = Plan(target=namespace, kind="namespace", also=demo_scope(claim), confirm=..., cluster=api)
    create_demo(plan, namespace, claim); add_fitting_volume(plan, namespace, claim)
    clean_up_demo(plan)
"""
from __future__ import annotations

import json

import pandas as pd
from kubernetes import client

from ..plan import Plan
from . import binding

CLAIM_COLUMNS = ["namespace", "claim", "phase", "class", "request", "access modes", "volume", "why"]
VOLUME_COLUMNS = ["pv", "phase", "capacity", "access modes", "class", "labels", "claim"]


def _items(call, *args) -> list[dict]:
    return json.loads(call(*args, _preload_content=False).data)["items"]


def listing(api, namespace: str = "") -> tuple[list[dict], list[dict], list[dict]]:
    """Claims (of ``namespace``, or all), PVs and StorageClasses as the API returns them."""
    core = client.CoreV1Api(api)
    claims = _items(core.list_namespaced_persistent_volume_claim, namespace) if namespace else \
        _items(core.list_persistent_volume_claim_for_all_namespaces)
    return claims, _items(core.list_persistent_volume), _items(client.StorageV1Api(api).list_storage_class)


def tables(claims: list[dict], pvs: list[dict], classes: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Claims with the binder's verdict for each Pending one, and volumes with who claims them."""
    claim_rows = []
    for c in sorted(claims, key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"])):
        spec, phase = c.get("spec") or {}, (c.get("status") or {}).get("phase") or "Pending"
        claim_rows.append({"namespace": c["metadata"]["namespace"], "claim": c["metadata"]["name"], "phase": phase,
                           "class": binding.claim_class(c) or "(none)",
                           "request": ((spec.get("resources") or {}).get("requests") or {}).get("storage", ""),
                           "access modes": ",".join(spec.get("accessModes") or []),
                           "volume": spec.get("volumeName") or "",
                           "why": binding.verdict(c, pvs, classes) if phase == "Pending" else ""})
    volume_rows = []
    for v in sorted(pvs, key=lambda v: v["metadata"]["name"]):
        spec, ref = v.get("spec") or {}, (v.get("spec") or {}).get("claimRef") or {}
        volume_rows.append({"pv": v["metadata"]["name"], "phase": (v.get("status") or {}).get("phase", ""),
                            "capacity": (spec.get("capacity") or {}).get("storage", ""),
                            "access modes": ",".join(spec.get("accessModes") or []),
                            "class": binding.volume_class(v) or "(none)",
                            "labels": ",".join(f"{k}={x}" for k, x in sorted((v["metadata"].get("labels") or {}).items())),
                            "claim": f"{ref.get('namespace')}/{ref.get('name')}" if ref else ""})
    return (pd.DataFrame(claim_rows, columns=CLAIM_COLUMNS), pd.DataFrame(volume_rows, columns=VOLUME_COLUMNS))


def board(api, namespace: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    return tables(*listing(api, namespace))


def blocked_by(cells: dict[str, str]) -> str:
    """The first rule a PV fails for a claim, with its reason ("" when it fits)."""
    for check in binding.CHECKS:
        reason = cells.get(check, binding.OK)
        if reason != binding.OK and not reason.startswith("not checked"):
            return f"{check}: {reason}"
    return ""


def blocking(claim: dict, pvs: list[dict]) -> pd.DataFrame:
    """Every PV for ``claim``: does it fit, and if not the rule that blocks it."""
    rows = [{"pv": pv["metadata"]["name"], "fits": binding.fits(cells := binding.check_volume(pv, claim)),
             "blocked by": blocked_by(cells)} for pv in sorted(pvs, key=lambda v: v["metadata"]["name"])]
    return pd.DataFrame(rows, columns=["pv", "fits", "blocked by"])


def demo_volume_names(namespace: str, claim: str, request: str = "1Gi") -> list[str]:
    return [pv["metadata"]["name"] for pv in [*binding.demo_volumes(namespace, claim, request),
                                              binding.fitting_volume(namespace, claim, request)]]


def demo_scope(namespace: str, claim: str, request: str = "1Gi", *, fitting: bool = True,
               broken: bool = True) -> list[str]:
    """What a plan of the demo touches besides its namespace: each PV, cluster-scoped, by name."""
    names = [pv["metadata"]["name"] for pv in binding.demo_volumes(namespace, claim, request)] if broken else []
    names += [binding.fitting_volume(namespace, claim, request)["metadata"]["name"]] if fitting else []
    return [f"persistentvolume/{name}" for name in names]


def _create_volume(plan: Plan, body: dict) -> str | None:
    name, spec = body["metadata"]["name"], body["spec"]
    return plan.create(body, step=f"create-pv-{name}",
                       command=f"kubectl create -f {name}.yaml  # {spec['capacity']['storage']}, "
                               f"{','.join(spec['accessModes'])}, class {spec.get('storageClassName') or '(none)'}")


def create_demo(plan: Plan, namespace: str, claim: str, request: str = "1Gi") -> list:
    """The why-pvc-pending demo: the namespace, PVs that each break one binder rule, and the claim."""
    steps = [plan.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                         step=f"namespace-{namespace}", command=f"kubectl create namespace {namespace}")]
    steps += [_create_volume(plan, pv) for pv in binding.demo_volumes(namespace, claim, request)]
    steps.append(plan.create(binding.demo_claim(claim, request), namespace, step=f"create-pvc-{claim}",
                             command=f"kubectl -n {namespace} create -f {claim}.yaml  # {request}, ReadWriteMany, "
                                     f"no class, selector {binding.DEMO_LABELS}"))
    return steps


def add_fitting_volume(plan: Plan, namespace: str, claim: str, request: str = "1Gi") -> str | None:
    """A PV that passes every rule for the demo claim: the PV controller binds the claim to it."""
    return _create_volume(plan, binding.fitting_volume(namespace, claim, request))


# claims before volumes before the namespace: a PV bound to a claim keeps its
# kubernetes.io/pv-protection finalizer until the claim is gone
_CLEAN_UP_ORDER = {"PersistentVolumeClaim": 0, "PersistentVolume": 1, "Namespace": 2}


def clean_up_demo(plan: Plan) -> list:
    """Delete what this run created in the plan's scope (the demo's claim, PVs and namespace), claims
    first. Objects that existed before the run are not in its record, and are left alone."""
    mine = [ref for ref in reversed(plan.record.created) if plan.covers(ref)]
    return [plan.delete(ref, step=f"clean-up-{ref.kind.lower()}-{ref.name}")
            for ref in sorted(mine, key=lambda ref: _CLEAN_UP_ORDER.get(ref.kind, 0))]
