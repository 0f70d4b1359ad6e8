"""Workloads with placement rules built from runbook parameters, and where their replicas landed.

    body = deployment("eladmin-web", replicas=3, tolerations=["smoke=true:NoSchedule", "drunk"],
                      pod_anti_affinity="required")
    apply_deployment(plan, "kubebook-demo", body)    # a step: created, or backed up and replaced
    settle(plan, "kubebook-demo", "eladmin-web")      # every replica bound or marked Unschedulable
    placement(api, "kubebook-demo", "app=eladmin-web")  # pod, node, phase, scheduler's message

Demo Deployments use the Recreate strategy: a changed rule replaces every replica at once, so
the table shows the new rule's effect, not a rollout stuck half-way behind Pending Pods.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
from kubernetes import client

from ..objects import Ref
from ..plan import Plan
from ..waits import wait_for
from .diagnose import NoController, NoScheduler, Steady, cannot_place, guarded
from .syntax import describe_toleration, parse_label_selector, parse_term, parse_toleration, parse_weighted_term

IMAGE = "nginx:1.27"  # kwok runs nothing, so any image name works on the lab
HOSTNAME = "kubernetes.io/hostname"


def placement_rules(*, app: str, node_selector: dict | None = None, required_node_terms: list[str] = (),
                    preferred_node_terms: list[str] = (), pod_affinity: str = "", pod_affinity_to: str = "",
                    pod_anti_affinity: str = "", topology_key: str = HOSTNAME,
                    tolerations: list[str] = ()) -> dict[str, Any]:
    """The Pod spec fields that steer scheduling, from the short forms in :mod:`.syntax`.

    ``pod_affinity``/``pod_anti_affinity`` are ``""``, ``"required"`` or ``"preferred"``;
    anti-affinity keeps replicas of ``app`` apart per ``topology_key``; affinity keeps them
    next to Pods selected by ``pod_affinity_to`` (default: their own app).
    """
    spec: dict[str, Any] = {}
    if node_selector:
        spec["nodeSelector"] = {str(k): str(v) for k, v in node_selector.items()}
    affinity: dict[str, Any] = {}
    node_affinity: dict[str, Any] = {}
    if required_node_terms:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [parse_term(t) for t in required_node_terms]}
    if preferred_node_terms:
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            parse_weighted_term(t) for t in preferred_node_terms]
    if node_affinity:
        affinity["nodeAffinity"] = node_affinity
    for kind, mode, selector in (("podAffinity", pod_affinity, pod_affinity_to or f"app={app}"),
                                 ("podAntiAffinity", pod_anti_affinity, f"app={app}")):
        if not mode:
            continue
        term = {"labelSelector": parse_label_selector(selector), "topologyKey": topology_key}
        if mode == "required":
            affinity[kind] = {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
        elif mode == "preferred":
            affinity[kind] = {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}]}
        else:
            raise ValueError(f"{kind}: {mode!r} is not one of '', 'required', 'preferred'")
    if affinity:
        spec["affinity"] = affinity
    if tolerations:
        spec["tolerations"] = [parse_toleration(t) for t in tolerations]
    return spec


def deployment(name: str, *, replicas: int = 3, image: str = IMAGE, requests: dict | None = None,
               **rules: Any) -> dict:
    """A Deployment labelled ``app=<name>`` whose Pods carry :func:`placement_rules` ``**rules``."""
    container: dict[str, Any] = {"name": name, "image": image}
    if requests:
        container["resources"] = {"requests": {k: str(v) for k, v in requests.items()}}
    pod_spec = {"containers": [container], "terminationGracePeriodSeconds": 0,
                **placement_rules(app=name, **rules)}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}}}


def daemonset(name: str, *, image: str = IMAGE) -> dict:
    """A DaemonSet labelled ``app=<name>``: one Pod per schedulable node, which drain skips."""
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image}],
                                           "terminationGracePeriodSeconds": 0}}}}


def apply_daemonset(plan: Plan, namespace: str, body: dict) -> str | None:
    return plan.apply(body, namespace, step=f"apply-{body['metadata']['name']}",
                      command=f"kubectl -n {namespace} apply -f {body['metadata']['name']}.yaml")


def wait_daemonset(plan: Plan, namespace: str, name: str, *, timeout: float = 60) -> str | None:
    """Wait until the DaemonSet runs an available Pod on every node it should (its own status says so)."""
    def done(sets: dict[str, dict]) -> bool:
        d = sets.get(name)
        s = (d or {}).get("status") or {}
        return bool(d) and s.get("observedGeneration", 0) >= d["metadata"].get("generation", 1) and \
            s.get("desiredNumberScheduled", 0) > 0 and s.get("numberAvailable", 0) == s["desiredNumberScheduled"]

    def act() -> str:
        d = wait_for(plan.api, "daemonsets", done, namespace=namespace, timeout=timeout,
                     what=f"DaemonSet {namespace}/{name} available on its nodes",
                     diagnose=guarded(_daemonset_diagnosis(plan.api, namespace, name)))[name]
        return f"DaemonSet {namespace}/{name}: {d['status']['numberAvailable']} Pods available"

    return plan.wait(f"wait-{name}", f"DaemonSet {namespace}/{name} runs an available Pod on every node", act)


def _daemonset_diagnosis(api, namespace: str, name: str):
    """Why a DaemonSet's Pods do not become available: no controller acts, or the scheduler cannot
    place one of them (a DaemonSet Pod is bound to its node by the default scheduler)."""
    controller = NoController("DaemonSet", "DaemonSet controller")
    steady = Steady()

    def why(sets: dict[str, dict]) -> str | None:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={name}").items
        return controller(sets.get(name)) or steady(cannot_place(api.sanitize_for_serialization(p) for p in pods))
    return why


def ensure_namespace(plan: Plan, namespace: str) -> str | None:
    """Create ``namespace`` if missing (kept if it exists) and wait for its default ServiceAccount."""
    created = plan.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                          step=f"namespace-{namespace}", command=f"kubectl create namespace {namespace}")
    # Pods are refused until the ServiceAccount controller made `default`
    plan.wait(f"namespace-{namespace}-ready", f"namespace {namespace} has its default ServiceAccount",
              lambda: wait_for(plan.api, "serviceaccounts", lambda s: "default" in s, namespace=namespace,
                               timeout=60, what=f"ServiceAccount {namespace}/default") and "ready")
    return created


def apply_deployment(plan: Plan, namespace: str, body: dict) -> str | None:
    """Create the Deployment, or replace its spec (one that existed before is backed up first and put
    back at clean-up)."""
    name = body["metadata"]["name"]
    rules = describe_rules(body["spec"]["template"]["spec"])
    return plan.apply(body, namespace, step=f"apply-{name}",
                      description=f"apply Deployment {namespace}/{name} with {body['spec']['replicas']} replicas; "
                                  f"{rules or 'no placement rules'}",
                      command=f"kubectl -n {namespace} apply -f {name}.yaml")


def scale(plan: Plan, namespace: str, name: str, replicas: int) -> str | None:
    return plan.modify(Ref("Deployment", name, namespace),
                       lambda d: None if (d.get("spec") or {}).get("replicas") == replicas else
                       {"spec": {"replicas": replicas}},
                       step=f"scale-{name}", description=f"scale Deployment {namespace}/{name} to {replicas}",
                       command=f"kubectl -n {namespace} scale deployment {name} --replicas={replicas}")


def describe_rules(pod_spec: dict) -> str:
    parts = []
    if pod_spec.get("nodeSelector"):
        parts.append("nodeSelector " + ",".join(f"{k}={v}" for k, v in pod_spec["nodeSelector"].items()))
    affinity = pod_spec.get("affinity") or {}
    for kind in ("nodeAffinity", "podAffinity", "podAntiAffinity"):
        for mode in ("required", "preferred"):
            if f"{mode}DuringSchedulingIgnoredDuringExecution" in (affinity.get(kind) or {}):
                parts.append(f"{mode} {kind}")
    if pod_spec.get("tolerations"):
        parts.append("tolerations " + "; ".join(describe_toleration(t) for t in pod_spec["tolerations"]))
    return ", ".join(parts)


def _decided(pod: dict) -> bool:
    """Bound to a node, or the scheduler has said it cannot place it (PodScheduled=False)."""
    if (pod.get("spec") or {}).get("nodeName"):
        return True
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False"
               for c in (pod.get("status") or {}).get("conditions") or [])


def settle(plan: Plan, namespace: str, name: str, *, timeout: float = 90) -> str | None:
    """Wait until the Deployment's replicas all exist and each is bound or judged unschedulable.

    First the Deployment's own accounting (observed generation, no old replicas left), then the
    Pods themselves; both by watch. A step of ``plan``: nothing to wait for in a dry run.
    """
    return plan.wait(f"settle-{name}", f"every replica of {namespace}/{name} is bound or unschedulable",
                     lambda: _settle(plan.api, namespace, name, timeout=timeout))


def _settle(api, namespace: str, name: str, *, timeout: float) -> str:
    apps = client.AppsV1Api(api)
    want = apps.read_namespaced_deployment(name, namespace).spec.replicas

    def rolled(deps: dict[str, dict]) -> bool:
        d = deps.get(name)
        if not d:
            return False
        status = d.get("status") or {}
        return status.get("observedGeneration", 0) >= d["metadata"].get("generation", 1) and \
            status.get("replicas", 0) == want and status.get("updatedReplicas", 0) == want

    controller = NoController("Deployment", "Deployment controller")
    wait_for(api, "deployments", rolled, namespace=namespace, timeout=timeout,
             what=f"Deployment {namespace}/{name} to have {want} up-to-date replicas",
             diagnose=guarded(lambda deps: controller(deps.get(name))))
    pods = wait_for(api, "pods", lambda ps: len(live := [p for p in ps.values()
                                                          if not p["metadata"].get("deletionTimestamp")]) == want
                    and all(_decided(p) for p in live),
                    namespace=namespace, label_selector=f"app={name}", timeout=timeout,
                    what=f"{want} Pods of {namespace}/{name} bound or unschedulable",
                    diagnose=guarded(NoScheduler(api)))
    bound = sum(1 for p in pods.values() if (p.get("spec") or {}).get("nodeName"))
    return f"{namespace}/{name}: {bound} of {want} Pods bound, {want - bound} unschedulable"


def placement(api, namespace: str, selector: str) -> pd.DataFrame:
    """Where each selected Pod landed (or why not): pod, node, phase, the scheduler's condition."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    rows = []
    for p in sorted(pods, key=lambda p: p.metadata.name):
        if p.metadata.deletion_timestamp:
            continue
        cond = next((c for c in p.status.conditions or [] if c.type == "PodScheduled"), None)
        rows.append({"pod": p.metadata.name, "node": p.spec.node_name or "", "phase": p.status.phase,
                     "scheduled": "" if cond is None else cond.status,
                     "scheduler says": "" if cond is None or cond.status == "True" else
                     f"{cond.reason}: {cond.message}"})
    return pd.DataFrame(rows, columns=["pod", "node", "phase", "scheduled", "scheduler says"])


def per_node(table: pd.DataFrame) -> pd.DataFrame:
    """How many replicas each node got (Pending ones counted under ``<pending>``)."""
    nodes = table["node"].replace("", "<pending>") if len(table) else table["node"]
    return nodes.value_counts().rename_axis("node").reset_index(name="replicas").sort_values("node") \
        .reset_index(drop=True)


def tolerations_of(api, namespace: str, selector: str) -> pd.DataFrame:
    """The tolerations of the first selected Pod as the API stored them, defaults included.

    The DefaultTolerationSeconds admission plugin adds not-ready and unreachable NoExecute
    tolerations for 300 s to every Pod that does not set them: that is how long a Pod stays on a
    node that stopped reporting before the taint-eviction controller deletes it.
    """
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    if not pods:
        return pd.DataFrame(columns=["key", "operator", "value", "effect", "tolerationSeconds", "added by"])
    rows = []
    for t in pods[0].spec.tolerations or []:
        default = t.key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable") and \
            t.toleration_seconds == 300
        rows.append({"key": t.key or "*", "operator": t.operator or "Equal", "value": t.value or "",
                     "effect": t.effect or "(all)", "tolerationSeconds": t.toleration_seconds,
                     "added by": "admission (DefaultTolerationSeconds)" if default else "Pod spec"})
    return pd.DataFrame(rows)


def landed_only_on(api, namespace: str, name: str, allowed: list[str]) -> pd.DataFrame:
    """Placement of the Deployment's Pods; raises if one is bound to a node outside ``allowed``."""
    table = placement(api, namespace, f"app={name}")
    stray = table[(table["node"] != "") & ~table["node"].isin(allowed)]
    if len(stray):
        raise AssertionError(f"Pods outside {allowed}: {', '.join(stray['pod'] + ' on ' + stray['node'])}")
    return table


def evicted_from(plan: Plan, namespace: str, selector: str, node: str, *, timeout: float = 90) -> pd.DataFrame | None:
    """Wait until the selected Pods on ``node`` that do not tolerate its NoExecute taints are gone.

    The taint-eviction controller in kube-controller-manager deletes them; a toleration with
    ``tolerationSeconds`` only delays it. Returns the Pods that had to go (None in a dry run).
    """
    return plan.wait(f"evicted-from-{node}", f"Pods without a NoExecute toleration have left {node}",
                     lambda: _evicted_from(plan.api, namespace, selector, node, timeout=timeout))


def _evicted_from(api, namespace: str, selector: str, node: str, *, timeout: float) -> pd.DataFrame:
    from .explain import untolerated
    from .nodes import get_node
    taints = (get_node(api, node).get("spec") or {}).get("taints") or []
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    doomed = {p.metadata.name for p in pods if p.spec.node_name == node and untolerated(
        taints, api.sanitize_for_serialization(p.spec).get("tolerations") or [], ("NoExecute",))}
    wait_for(api, "pods", lambda ps: not doomed & set(ps), namespace=namespace, label_selector=selector,
             timeout=timeout, what=f"Pods without a NoExecute toleration to leave {node}")
    return pd.DataFrame({"evicted from " + node: sorted(doomed)})
