"""Why is this Pod Pending, and why not that node: the scheduler's filters, recomputed from live objects.

Everything here works on objects as the API returns them (dicts with camelCase keys), so the
same code explains a live cluster, a recorded fixture, or 5,000 Pods listed once. A
:class:`Snapshot` indexes nodes and the Pods bound to them once; :func:`explain` then checks
one Pod against every node in memory:

    snap = Snapshot.take(api)
    explain(pod, snap)            # DataFrame: one row per node, one column per check
    fit_nodes(pod, snap)          # the nodes where every filter passes

The checks follow kube-scheduler's default filter plugins, in its order: NodeUnschedulable,
TaintToleration, NodeAffinity (nodeSelector + required node affinity), NodePorts,
NodeResourcesFit, PodTopologySpread (DoNotSchedule constraints) and InterPodAffinity. Volume
and DRA filters are not recomputed; a Pod that uses them is flagged (see :func:`unexplained_features`).
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import pandas as pd

from ..quantities import format_quantity, quantity  # noqa: F401 (re-exported: callers import them from here)
from ..selectors import describe_requirement, label_selector_matches, requirement_matches  # noqa: F401

TERMINAL = ("Succeeded", "Failed")
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
HOSTNAME = "kubernetes.io/hostname"

# Column name -> the scheduler plugin it recomputes, in the order kube-scheduler runs them.
CHECKS = {
    "unschedulable": "NodeUnschedulable",
    "taints": "TaintToleration",
    "node selector": "NodeAffinity",
    "node affinity": "NodeAffinity",
    "host ports": "NodePorts",
    "resources": "NodeResourcesFit",
    "topology spread": "PodTopologySpread",
    "pod affinity": "InterPodAffinity",
}

# The scheduler's own words per failure (pkg/scheduler/framework/plugins/*), so our summary can be
# read next to, and compared with, its FailedScheduling message.
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_TAINT = "node(s) had untolerated taint(s)"
REASON_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_POD_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_POD_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_SPREAD = "node(s) didn't match pod topology spread constraints"
REASON_SPREAD_LABEL = REASON_SPREAD + " (missing required label)"


def pod_requests(pod: dict) -> dict[str, int]:
    """What the Pod asks of a node: max(sum of containers + sidecars, each init step), or the Pod-level
    requests where set, plus overhead."""
    spec = pod.get("spec") or {}

    def requests_of(container: dict) -> Counter:
        req = ((container.get("resources") or {}).get("requests") or {})
        return Counter({r: quantity(v, r) for r, v in req.items()})

    total = Counter()
    for c in spec.get("containers") or []:
        total.update(requests_of(c))
    sidecars, init_peak = Counter(), Counter()
    for c in spec.get("initContainers") or []:
        req = requests_of(c)
        if c.get("restartPolicy") == "Always":  # a sidecar keeps running beside the app containers
            sidecars.update(req)
            step = sidecars.copy()
        else:
            step = sidecars + req
        for r, v in step.items():
            init_peak[r] = max(init_peak[r], v)
    total.update(sidecars)
    for r, v in init_peak.items():
        total[r] = max(total[r], v)
    # pod-level resources (PodLevelResources, on by default since 1.34) replace the containers' sum
    for r, v in ((spec.get("resources") or {}).get("requests") or {}).items():
        total[r] = quantity(v, r)
    for r, v in (spec.get("overhead") or {}).items():
        total[r] += quantity(v, r)
    return {r: v for r, v in total.items() if v}


def host_ports(pod: dict) -> list[tuple[str, str, int]]:
    """(protocol, hostIP, hostPort) the Pod binds on its node."""
    spec = pod.get("spec") or {}
    found = []
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                found.append((p.get("protocol") or "TCP", p.get("hostIP") or "0.0.0.0", int(p["hostPort"])))
    return found


def _ports_conflict(a: tuple[str, str, int], b: tuple[str, str, int]) -> bool:
    return a[0] == b[0] and a[2] == b[2] and (a[1] == b[1] or "0.0.0.0" in (a[1], b[1]))


# ---- selectors ------------------------------------------------------------------------------------
def node_term_matches(term: dict, node: dict) -> bool:
    """A nodeSelectorTerm: every expression and field requirement holds (an empty term matches nothing)."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    field_values = {"metadata.name": node["metadata"]["name"]}
    return all(requirement_matches(r, labels) for r in exprs) and \
        all(requirement_matches(r, field_values) for r in fields)


# ---- taints and tolerations ----------------------------------------------------------------------
def tolerates(toleration: dict, taint: dict) -> bool:
    """Whether one toleration tolerates one taint (the API's ToleratesTaint)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True  # an empty key with Exists tolerates every taint
    if not key:
        return False
    return (toleration.get("value") or "") == (taint.get("value") or "")


def describe_taint(taint: dict) -> str:
    value = taint.get("value")
    return f"{taint['key']}{'=' + value if value else ''}:{taint['effect']}"


def untolerated(taints: Iterable[dict], tolerations: list[dict], effects=("NoSchedule", "NoExecute")) -> list[dict]:
    return [t for t in taints if t.get("effect") in effects and not any(tolerates(tol, t) for tol in tolerations)]


# ---- the snapshot ---------------------------------------------------------------------------------
@dataclass
class Snapshot:
    """Nodes, namespaces and Pods listed once, indexed the way the scheduler's cache is."""

    nodes: list[dict]
    pods: list[dict]
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels

    def __post_init__(self) -> None:
        self.node_by_name = {n["metadata"]["name"]: n for n in self.nodes}
        self.assigned: dict[str, list[dict]] = defaultdict(list)  # node -> non-terminated Pods bound to it
        self.requested: dict[str, Counter] = defaultdict(Counter)
        self.ports: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        self.with_anti_affinity: list[dict] = []  # bound Pods whose required anti-affinity can repel others
        self.uids: dict[str, set[str]] = defaultdict(set)
        for pod in self.pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or (pod.get("status") or {}).get("phase") in TERMINAL:
                continue
            self.assigned[node].append(pod)
            self.uids[node].add(pod["metadata"].get("uid"))
            self.requested[node].update(pod_requests(pod))
            self.ports[node].extend(host_ports(pod))
            if _required_terms(pod, "podAntiAffinity"):
                self.with_anti_affinity.append(pod)

    @classmethod
    def take(cls, api) -> "Snapshot":
        """List nodes, namespaces and Pods once (raw JSON: the typed models cost seconds at 5,000 Pods)."""
        from kubernetes import client
        core = client.CoreV1Api(api)
        nodes = _raw(core.list_node)["items"]
        pods = _raw(core.list_pod_for_all_namespaces)["items"]
        namespaces = {n["metadata"]["name"]: n["metadata"].get("labels") or {}
                      for n in _raw(core.list_namespace)["items"]}
        return cls(nodes=nodes, pods=pods, namespaces=namespaces)

    def pod(self, namespace: str, name: str) -> dict:
        for p in self.pods:
            if p["metadata"]["name"] == name and p["metadata"].get("namespace") == namespace:
                return p
        raise KeyError(f"pod {namespace}/{name} not in the snapshot")

    def pending(self) -> list[dict]:
        """Pods waiting for a node: no nodeName and not finished."""
        return [p for p in self.pods if not (p.get("spec") or {}).get("nodeName")
                and (p.get("status") or {}).get("phase") not in TERMINAL]


def _raw(list_call, **kwargs) -> dict:
    response = list_call(_preload_content=False, **kwargs)
    return json.loads(response.data)


def _required_terms(pod: dict, kind: str) -> list[dict]:
    return (((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}) \
        .get("requiredDuringSchedulingIgnoredDuringExecution") or []


def _term_namespaces(term: dict, owner: dict, snap: Snapshot) -> set[str] | None:
    """Namespaces a pod (anti-)affinity term looks at; None means all of them."""
    listed = set(term.get("namespaces") or [])
    selector = term.get("namespaceSelector")
    if selector is None:
        return listed or {owner["metadata"].get("namespace")}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return None  # {} selects every namespace
    return listed | {ns for ns, labels in snap.namespaces.items() if label_selector_matches(selector, labels)}


def _term_matches_pod(term: dict, namespaces: set[str] | None, pod: dict) -> bool:
    if namespaces is not None and pod["metadata"].get("namespace") not in namespaces:
        return False
    return label_selector_matches(term.get("labelSelector"), pod["metadata"].get("labels") or {})


# ---- one Pod against every node -------------------------------------------------------------------
@dataclass
class _PodFacts:
    """What the filters need from the incoming Pod, and counts over the cluster computed once for it."""

    pod: dict
    snap: Snapshot

    def __post_init__(self) -> None:
        spec = self.pod.get("spec") or {}
        uid = self.pod["metadata"].get("uid")
        # the node this very Pod is bound to, if it is: explaining a bound Pod must not count it twice
        self.home = spec.get("nodeName") if uid and uid in self.snap.uids.get(spec.get("nodeName"), ()) else None
        self.tolerations = spec.get("tolerations") or []
        self.node_selector = spec.get("nodeSelector") or {}
        node_affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {})
        self.required_node = (node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}) \
            .get("nodeSelectorTerms")
        self.preferred_node = node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        self.requests = pod_requests(self.pod)
        self.ports = host_ports(self.pod)
        self.affinity_terms = _required_terms(self.pod, "podAffinity")
        self.anti_terms = _required_terms(self.pod, "podAntiAffinity")
        labels = self.pod["metadata"].get("labels") or {}
        # Counts per (topologyKey, value) as InterPodAffinity's PreFilter computes them.
        self.affinity_counts: Counter = Counter()
        self.anti_counts: Counter = Counter()
        self.existing_anti_counts: Counter = Counter()
        self.existing_anti_owners: dict[tuple[str, str], list[str]] = defaultdict(list)
        if self.affinity_terms or self.anti_terms:
            aff_ns = [_term_namespaces(t, self.pod, self.snap) for t in self.affinity_terms]
            anti_ns = [_term_namespaces(t, self.pod, self.snap) for t in self.anti_terms]
            for node_name, bound in self.snap.assigned.items():
                node = self.snap.node_by_name.get(node_name)
                if node is None:
                    continue
                node_labels = node["metadata"].get("labels") or {}
                for other in bound:
                    if other["metadata"].get("uid") == uid:
                        continue  # a bound Pod explained after the fact must not collide with itself
                    if self.affinity_terms and all(_term_matches_pod(t, ns, other)
                                                   for t, ns in zip(self.affinity_terms, aff_ns)):
                        for t in self.affinity_terms:
                            if t["topologyKey"] in node_labels:
                                self.affinity_counts[(t["topologyKey"], node_labels[t["topologyKey"]])] += 1
                    for t, ns in zip(self.anti_terms, anti_ns):
                        if t["topologyKey"] in node_labels and _term_matches_pod(t, ns, other):
                            self.anti_counts[(t["topologyKey"], node_labels[t["topologyKey"]])] += 1
        self.self_affine = bool(self.affinity_terms) and all(
            _term_matches_pod(t, _term_namespaces(t, self.pod, self.snap), self.pod) for t in self.affinity_terms)
        for other in self.snap.with_anti_affinity:
            if other["metadata"].get("uid") == uid:
                continue
            node = self.snap.node_by_name.get(other["spec"]["nodeName"])
            if node is None:
                continue
            node_labels = node["metadata"].get("labels") or {}
            for t in _required_terms(other, "podAntiAffinity"):
                if t["topologyKey"] in node_labels and \
                        _term_matches_pod(t, _term_namespaces(t, other, self.snap), self.pod):
                    pair = (t["topologyKey"], node_labels[t["topologyKey"]])
                    self.existing_anti_counts[pair] += 1
                    self.existing_anti_owners[pair].append(f"{other['metadata'].get('namespace')}/"
                                                           f"{other['metadata']['name']}")
        self.labels = labels
        self.spread = self._spread_counts(spec)

    def _spread_counts(self, spec: dict) -> list[dict]:
        """PodTopologySpread's PreFilter: matching Pods per domain over the eligible nodes.

        Eligible: matches the Pod's nodeSelector/required affinity (nodeAffinityPolicy Honor, the
        default) and, only with nodeTaintsPolicy Honor, tolerated taints; and carries every
        constraint's topology key. Fewer domains than minDomains makes the global minimum 0.
        """
        hard = [c for c in spec.get("topologySpreadConstraints") or []
                if c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule"]
        if not hard:
            return []
        keys = [c["topologyKey"] for c in hard]
        ns, uid = self.pod["metadata"].get("namespace"), self.pod["metadata"].get("uid")
        result = []
        for c in hard:
            counts: Counter = Counter()
            for node in self.snap.nodes:
                labels = node["metadata"].get("labels") or {}
                if not all(k in labels for k in keys):
                    continue
                if c.get("nodeAffinityPolicy", "Honor") == "Honor" and not _node_affinity_ok(self, node):
                    continue
                if c.get("nodeTaintsPolicy", "Ignore") == "Honor" and \
                        untolerated((node.get("spec") or {}).get("taints") or [], self.tolerations):
                    continue
                domain = labels[c["topologyKey"]]
                counts[domain] += sum(
                    1 for p in self.snap.assigned.get(node["metadata"]["name"], ())
                    if p["metadata"].get("namespace") == ns and not p["metadata"].get("deletionTimestamp")
                    and p["metadata"].get("uid") != uid
                    and label_selector_matches(c.get("labelSelector"), p["metadata"].get("labels") or {}))
            minimum = min(counts.values()) if counts else 0
            if len(counts) < (c.get("minDomains") or 1):
                minimum = 0
            result.append({"key": c["topologyKey"], "max_skew": c["maxSkew"], "counts": counts, "min": minimum,
                           "self": int(label_selector_matches(c.get("labelSelector"), self.labels))})
        return result


def _node_affinity_ok(f: "_PodFacts", node: dict) -> bool:
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in f.node_selector.items()):
        return False
    return f.required_node is None or any(node_term_matches(t, node) for t in f.required_node)


def _check_node(f: _PodFacts, node: dict) -> dict[str, Any]:
    """One row: each check's failure text ("" when it passes) and the scheduler's reasons for this node."""
    name = node["metadata"]["name"]
    spec = node.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    row: dict[str, Any] = {"node": name}
    reasons: dict[str, list[str]] = {}

    # NodeUnschedulable: cordoned, unless the Pod tolerates the unschedulable taint
    cordon = ""
    if spec.get("unschedulable") and not any(
            tolerates(t, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}) for t in f.tolerations):
        cordon = "cordoned (spec.unschedulable)"
        reasons["unschedulable"] = [REASON_UNSCHEDULABLE]
    row["unschedulable"] = cordon

    # TaintToleration: NoSchedule and NoExecute taints must be tolerated; PreferNoSchedule only scores
    bad = untolerated(spec.get("taints") or [], f.tolerations)
    row["taints"] = "untolerated " + ", ".join(describe_taint(t) for t in bad) if bad else ""
    if bad:
        reasons["taints"] = [REASON_TAINT]

    # NodeAffinity: nodeSelector AND (any required term); one plugin, one reason, two columns
    mismatched = [f"{k}={v} (node has {labels[k]!r})" if k in labels else f"{k}={v} (no such label)"
                  for k, v in f.node_selector.items() if labels.get(k) != v]
    row["node selector"] = "; ".join(mismatched)
    if mismatched:
        reasons["node selector"] = [REASON_NODE_AFFINITY]
    problems = []
    if f.required_node is not None and not any(node_term_matches(t, node) for t in f.required_node):
        failed = []
        for i, term in enumerate(f.required_node, 1):
            misses = [describe_requirement(r) for r in term.get("matchExpressions") or []
                      if not requirement_matches(r, labels)]
            misses += [describe_requirement(r) for r in term.get("matchFields") or []
                       if not requirement_matches(r, {"metadata.name": name})]
            failed.append(f"term {i}: " + ("; ".join(misses) or "empty term matches nothing"))
        problems.append(" | ".join(failed))
    row["node affinity"] = "; ".join(problems)
    if problems:
        reasons["node affinity"] = [REASON_NODE_AFFINITY]

    # NodePorts (a bound Pod explained after the fact must not clash with its own ports)
    taken = f.snap.ports.get(name, ())
    if f.ports and f.home == name:
        taken = list(taken)
        for p in f.ports:
            taken.remove(p)
    clashes = [p for p in f.ports if any(_ports_conflict(p, q) for q in taken)]
    row["host ports"] = "in use: " + ", ".join(f"{p[2]}/{p[0]}" for p in clashes) if clashes else ""
    if clashes:
        reasons["host ports"] = [REASON_PORTS]

    # NodeResourcesFit: requested vs allocatable minus what non-terminated Pods already requested
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    used = f.snap.requested.get(name) or Counter()
    count = len(f.snap.assigned.get(name, ()))
    if f.home == name:  # explained after the fact: take the Pod itself off its node
        count -= 1
        used = used.copy()
        used.subtract(f.requests)
    short, fit_reasons = [], []
    if count + 1 > quantity(allocatable.get("pods", "0")):
        short.append(f"pods: {count} of {allocatable.get('pods', 0)} already")
        fit_reasons.append(REASON_TOO_MANY_PODS)
    for resource, want in sorted(f.requests.items()):
        have = quantity(allocatable[resource], resource) if resource in allocatable else 0
        free = have - used.get(resource, 0)
        if want > free:
            short.append(f"{resource}: wants {format_quantity(want, resource)}, free "
                         f"{format_quantity(max(free, 0), resource)} of {format_quantity(have, resource)}")
            fit_reasons.append(f"Insufficient {resource}")
    row["resources"] = "; ".join(short)
    if fit_reasons:
        reasons["resources"] = fit_reasons

    # PodTopologySpread (DoNotSchedule constraints): skew = matching Pods in this node's domain
    # (+1 for the Pod itself when it matches) minus the fewest in any eligible domain
    spread, spread_reason = [], ""
    for c in f.spread:
        if c["key"] not in labels:
            spread, spread_reason = [f"node lacks topology label {c['key']}"], REASON_SPREAD_LABEL
            break
        skew = c["counts"].get(labels[c["key"]], 0) + c["self"] - c["min"]
        if skew > c["max_skew"]:
            spread.append(f"{c['key']}={labels[c['key']]}: skew {skew} > maxSkew {c['max_skew']} "
                          f"({c['counts'].get(labels[c['key']], 0)} here, fewest {c['min']})")
            spread_reason = spread_reason or REASON_SPREAD
    row["topology spread"] = "; ".join(spread)
    if spread_reason:
        reasons["topology spread"] = [spread_reason]

    # InterPodAffinity: the Pod's affinity, its anti-affinity, then existing Pods' anti-affinity
    pod_aff = []
    if f.affinity_terms:
        missing_key = [t["topologyKey"] for t in f.affinity_terms if t["topologyKey"] not in labels]
        if missing_key:
            pod_aff.append(f"affinity: node lacks topology label {missing_key[0]}")
        elif not all(f.affinity_counts[(t["topologyKey"], labels[t["topologyKey"]])] > 0 for t in f.affinity_terms) \
                and not (not f.affinity_counts and f.self_affine):
            pod_aff.append("affinity: no matching Pod in this node's " +
                           ", ".join(f"{t['topologyKey']}={labels[t['topologyKey']]}" for t in f.affinity_terms))
    scheduler_reason = REASON_POD_AFFINITY if pod_aff else ""
    for t in f.anti_terms:
        key = t["topologyKey"]
        if key in labels and f.anti_counts[(key, labels[key])] > 0:
            pod_aff.append(f"anti-affinity: {f.anti_counts[(key, labels[key])]} matching Pod(s) in {key}={labels[key]}")
            scheduler_reason = scheduler_reason or REASON_POD_ANTI_AFFINITY
            break
    for key, value in labels.items() if f.existing_anti_owners else ():
        owners = f.existing_anti_owners.get((key, value))
        if owners:
            pod_aff.append(f"repelled by anti-affinity of {', '.join(owners[:3])} in {key}={value}")
            scheduler_reason = scheduler_reason or REASON_EXISTING_ANTI_AFFINITY
            break
    row["pod affinity"] = "; ".join(pod_aff)
    if scheduler_reason:
        reasons["pod affinity"] = [scheduler_reason]

    row["fits"] = not reasons
    # the scheduler stops at the first failing plugin per node, so only that one is counted in its message
    first = next((c for c in CHECKS if c in reasons), None)
    row["scheduler reason"] = ", ".join(reasons[first]) if first else ""
    row["_reasons"] = reasons[first] if first else []

    # scoring hints: what the preferred rules and PreferNoSchedule taints say about this node
    row["preferred weight"] = sum(p.get("weight", 0) for p in f.preferred_node
                                  if node_term_matches(p.get("preference") or {}, node))
    row["PreferNoSchedule"] = ", ".join(describe_taint(t) for t in
                                        untolerated(spec.get("taints") or [], f.tolerations, ("PreferNoSchedule",)))
    return row


def check_rows(pod: dict, snap: Snapshot) -> list[dict[str, Any]]:
    facts = _PodFacts(pod, snap)
    return [_check_node(facts, n) for n in snap.nodes]


def explain(pod: dict, snap: Snapshot) -> pd.DataFrame:
    """Nodes × checks for ``pod``: each cell is empty when the check passes, else why it fails.

    ``fits`` is true where every check passes; ``scheduler reason`` is what kube-scheduler would
    count for that node (its first failing filter).
    """
    rows = check_rows(pod, snap)
    columns = ["node", "fits", *CHECKS, "scheduler reason", "preferred weight", "PreferNoSchedule"]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["fits", "node"], ascending=[False, True], kind="stable").reset_index(drop=True)


def fit_nodes(pod: dict, snap: Snapshot) -> set[str]:
    return {r["node"] for r in check_rows(pod, snap) if r["fits"]}


def summary(rows: list[dict[str, Any]]) -> str:
    """Our verdict in the scheduler's words: ``0/3 nodes are available: 1 node(s) ..., 2 ....``."""
    counts: Counter = Counter()
    for r in rows:
        counts.update(r["_reasons"])
    fitting = sum(1 for r in rows if r["fits"])
    parts = sorted(f"{n} {reason}" for reason, n in counts.items())
    return f"{fitting}/{len(rows)} nodes are available" + (": " + ", ".join(parts) if parts else "") + "."


def scheduler_summary(message: str) -> str:
    """The first sentence of a FailedScheduling message (what the filters said), without preemption."""
    head = message.split(". ", 1)[0]
    return head if head.endswith(".") else head + "."


def unexplained_features(pod: dict) -> list[str]:
    """Parts of the Pod spec that filters not recomputed here may reject (volumes, spread, DRA, gates)."""
    spec = pod.get("spec") or {}
    notes = []
    if any("persistentVolumeClaim" in v or "ephemeral" in v for v in spec.get("volumes") or []):
        notes.append("PersistentVolumeClaims (VolumeBinding, VolumeZone, NodeVolumeLimits)")
    if spec.get("resourceClaims"):
        notes.append("resourceClaims (DynamicResources)")
    if spec.get("schedulingGates"):
        notes.append("schedulingGates: the scheduler does not try the Pod until they are removed")
    if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
        notes.append(f"schedulerName {spec['schedulerName']}: another scheduler decides")
    return notes


# ---- many Pods at once ----------------------------------------------------------------------------
_SIGNATURE_SPEC = ("nodeSelector", "affinity", "tolerations", "overhead", "resources", "topologySpreadConstraints")


def _signature(pod: dict) -> str | None:
    """Everything in a Pod that filters read; Pods of one template share it, so they share one answer.

    Only the scheduling fields of containers count: their volume mounts name a per-Pod token volume.
    A Pod bound to a node (explained after the fact) gets no signature: it is left out of its own node.
    """
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return None
    containers = [[c.get("name"), (c.get("resources") or {}).get("requests"), c.get("ports"), c.get("restartPolicy")]
                  for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
    return json.dumps([pod["metadata"].get("namespace"), pod["metadata"].get("labels") or {},
                       [spec.get(k) for k in _SIGNATURE_SPEC], containers], sort_keys=True, default=str)


def explain_all(snap: Snapshot, pods: list[dict] | None = None) -> pd.DataFrame:
    """One row per Pod (default: every Pending one): how many nodes fit, which, and our summary.

    Pods with the same scheduling-relevant spec (replicas of one template) are computed once.
    """
    pods = snap.pending() if pods is None else pods
    memo: dict[str, tuple[list[str], str]] = {}
    rows = []
    for pod in pods:
        key = _signature(pod)
        if key is None or key not in memo:
            checked = check_rows(pod, snap)
            answer = ([r["node"] for r in checked if r["fits"]], summary(checked))
            if key is not None:
                memo[key] = answer
        else:
            answer = memo[key]
        fits, text = answer
        rows.append({"namespace": pod["metadata"].get("namespace"), "pod": pod["metadata"]["name"],
                     "fit nodes": len(fits), "fits": ", ".join(fits[:5]) + (" ..." if len(fits) > 5 else ""),
                     "explanation": text})
    return pd.DataFrame(rows, columns=["namespace", "pod", "fit nodes", "fits", "explanation"])
