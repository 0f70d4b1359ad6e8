"""The explanation logic on recorded and hand-built objects (no cluster needed).

The fixtures in ``fixtures/scheduling`` were recorded from the lab after its kube-scheduler had
placed (or refused) each Pod: nodes, Pods with their PodScheduled conditions, namespaces.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubebook.errors import KubebookError
from kubebook.scheduling import diagnose, drain, nodes, pending, syntax
from kubebook.scheduling.board import node_board
from kubebook.scheduling.explain import (Snapshot, check_rows, explain, explain_all, fit_nodes, host_ports,
                                         node_term_matches, pod_requests, quantity, requirement_matches,
                                         scheduler_summary, summary, tolerates, unexplained_features)

FIXTURES = Path(__file__).parent / "fixtures" / "scheduling"
RECORDED = sorted(FIXTURES.glob("*.json"))


def load(path: Path) -> Snapshot:
    data = json.loads(path.read_text())
    return Snapshot(nodes=data["nodes"], pods=data["pods"], namespaces=data["namespaces"])


def recorded_pods():
    for path in RECORDED:
        for p in json.loads(path.read_text())["pods"]:
            yield pytest.param(path, p["metadata"]["name"], id=f"{path.stem}/{p['metadata']['name']}")


@pytest.mark.parametrize("path,name", list(recorded_pods()))
def test_recorded_verdicts_agree_with_the_scheduler(path, name):
    snap = load(path)
    pod = snap.pod(next(iter(snap.namespaces)), name)
    rows = check_rows(pod, snap)
    fits = {r["node"] for r in rows if r["fits"]}
    condition = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    if pod["spec"].get("nodeName"):
        assert pod["spec"]["nodeName"] in fits
    else:
        assert condition["reason"] == "Unschedulable" and not fits
        assert summary(rows) == scheduler_summary(condition["message"])


def test_recorded_course_taints_name_each_untolerated_taint():
    snap = load(FIXTURES / "course-taints.json")
    waiting = next(p for p in snap.pending() if p["metadata"]["labels"]["app"] == "eladmin-web")
    table = explain(waiting, snap).set_index("node")
    assert table.loc["k8s-slave1", "taints"] == "untolerated drunk=true:NoSchedule"
    assert table.loc["k8s-slave2", "taints"] == "untolerated smoke=true:NoSchedule"
    assert "gamble=true:NoSchedule" in table.loc["k8s-master", "taints"]
    assert not table["fits"].any()


def test_explain_all_equals_one_by_one_and_reuses_work_per_template():
    snap = load(FIXTURES / "affinity.json")
    table = explain_all(snap, snap.pods)
    for pod, fits in zip(snap.pods, table["fit nodes"]):
        assert fits == len(fit_nodes(pod, snap))


# ---- hand-built objects -----------------------------------------------------------------------------
def node(name, *, labels=None, taints=None, unschedulable=False, cpu="2", memory="4Gi", pods="110"):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}


def pod(name, *, ns="default", labels=None, node_name=None, phase="Pending", requests=None, ports=None, **spec):
    container = {"name": "c"}
    if requests:
        container["resources"] = {"requests": requests}
    if ports:
        container["ports"] = ports
    body = {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "labels": labels or {}},
            "spec": {"containers": [container], **spec}, "status": {"phase": phase}}
    if node_name:
        body["spec"]["nodeName"] = node_name
    return body


def fits(p, nodes, pods=(), namespaces=None):
    return fit_nodes(p, Snapshot(nodes=list(nodes), pods=list(pods), namespaces=namespaces or {}))


@pytest.mark.parametrize("op,values,labels,expected", [
    ("In", ["ssd", "sas"], {"disktype": "sas"}, True),
    ("In", ["ssd"], {}, False),
    ("NotIn", ["ssd"], {}, True),  # a missing label is "not in"
    ("NotIn", ["ssd"], {"disktype": "ssd"}, False),
    ("Exists", None, {"disktype": ""}, True),
    ("DoesNotExist", None, {"disktype": "x"}, False),
    ("Gt", ["8"], {"disktype": "16"}, True),
    ("Gt", ["8"], {"disktype": "8"}, False),
    ("Lt", ["8"], {"disktype": "4"}, True),
    ("Gt", ["8"], {"disktype": "many"}, False),  # not an integer: never matches
    ("Lt", ["8"], {}, False),
])
def test_node_selector_operators(op, values, labels, expected):
    req = {"key": "disktype", "operator": op, **({"values": values} if values else {})}
    assert requirement_matches(req, labels) is expected


def test_terms_are_ored_expressions_anded_and_an_empty_term_matches_nothing():
    a, b = node("a", labels={"zone": "x", "cores": "4"}), node("b", labels={"zone": "y", "cores": "16"})
    terms = [syntax.parse_term("zone in (x), cores>8"), syntax.parse_term("zone in (y)")]
    p = pod("p", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}})
    assert fits(p, [a, b]) == {"b"}
    assert not node_term_matches({}, a)
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}
    assert node_term_matches(by_name, a) and not node_term_matches(by_name, b)


def test_node_selector_and_affinity_must_both_hold():
    a = node("a", labels={"disktype": "ssd"})
    p = pod("p", nodeSelector={"disktype": "ssd"}, affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [syntax.parse_term("!disktype")]}}})
    assert fits(p, [a]) == set()
    row = check_rows(p, Snapshot(nodes=[a], pods=[]))[0]
    assert row["node selector"] == "" and "term 1: disktype DoesNotExist" in row["node affinity"]
    wrong = check_rows(pod("w", nodeSelector={"disktype": "hdd", "gpu": "yes"}), Snapshot(nodes=[a], pods=[]))[0]
    assert wrong["node selector"] == "disktype=hdd (node has 'ssd'); gpu=yes (no such label)"
    assert wrong["_reasons"] == ["node(s) didn't match Pod's node affinity/selector"]  # counted once


@pytest.mark.parametrize("toleration,taint,expected", [
    ({"key": "smoke", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
     {"key": "smoke", "value": "true", "effect": "NoSchedule"}, True),
    ({"key": "smoke", "value": "true"}, {"key": "smoke", "value": "true", "effect": "NoExecute"}, True),  # Equal
    ({"key": "smoke", "value": "false"}, {"key": "smoke", "value": "true", "effect": "NoSchedule"}, False),
    ({"key": "drunk", "operator": "Exists"}, {"key": "drunk", "value": "x", "effect": "NoSchedule"}, True),
    ({"key": "drunk", "operator": "Exists", "effect": "NoExecute"}, {"key": "drunk", "effect": "NoSchedule"}, False),
    ({"operator": "Exists"}, {"key": "anything", "effect": "NoExecute"}, True),
    ({"operator": "Exists", "effect": "NoSchedule"}, {"key": "k", "effect": "NoExecute"}, False),
    ({"key": "", "operator": "Equal", "value": ""}, {"key": "k", "effect": "NoSchedule"}, False),
])
def test_tolerations(toleration, taint, expected):
    assert tolerates(toleration, taint) is expected


def test_prefer_no_schedule_only_scores_and_cordon_has_its_own_check():
    soft = node("soft", taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}])
    cordoned = node("cordoned", unschedulable=True)
    rows = {r["node"]: r for r in check_rows(pod("p"), Snapshot(nodes=[soft, cordoned], pods=[]))}
    assert rows["soft"]["fits"] and rows["soft"]["PreferNoSchedule"] == "k=v:PreferNoSchedule"
    assert not rows["cordoned"]["fits"] and rows["cordoned"]["scheduler reason"] == "node(s) were unschedulable"
    tolerant = pod("t", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                      "effect": "NoSchedule"}])
    assert fits(tolerant, [cordoned]) == {"cordoned"}


def test_requests_count_init_containers_sidecars_and_overhead():
    p = pod("p", requests={"cpu": "500m", "memory": "1Gi"}, overhead={"cpu": "100m"},
            initContainers=[{"name": "init", "resources": {"requests": {"cpu": "1"}}},
                            {"name": "proxy", "restartPolicy": "Always",
                             "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}}])
    # containers + sidecar = 700m; the first init step alone needs 1 CPU; plus 100m overhead
    assert pod_requests(p) == {"cpu": 1100, "memory": 2**30 + 64 * 2**20}
    pod_level = pod("q", requests={"cpu": "500m", "memory": "1Gi"}, resources={"requests": {"cpu": "2"}})
    assert pod_requests(pod_level) == {"cpu": 2000, "memory": 2**30}
    assert quantity("1.5", "cpu") == 1500 and quantity("100m", "cpu") == 100 and quantity("1e3") == 1000
    assert quantity("4Gi") == 4 * 2**30 and quantity("500M") == 500_000_000 and quantity("1m", "cpu") == 1


def test_resources_subtract_only_non_terminated_pods_and_count_pods():
    n = node("n", cpu="2", pods="2")
    running = pod("r", node_name="n", phase="Running", requests={"cpu": "1500m"})
    done = pod("d", node_name="n", phase="Succeeded", requests={"cpu": "2"})
    want = pod("w", requests={"cpu": "500m"})
    assert fits(want, [n], [running, done]) == {"n"}
    row = check_rows(pod("w2", requests={"cpu": "600m"}), Snapshot(nodes=[n], pods=[running, done]))[0]
    assert row["resources"] == "cpu: wants 600m, free 500m of 2" and row["scheduler reason"] == "Insufficient cpu"
    full = check_rows(want, Snapshot(nodes=[n], pods=[running, pod("x", node_name="n", phase="Running")]))[0]
    assert "Too many pods" in full["_reasons"]


def test_host_ports_conflict_by_protocol_port_and_address():
    n = node("n")
    taken = pod("t", node_name="n", phase="Running", ports=[{"containerPort": 80, "hostPort": 80,
                                                              "hostIP": "10.0.0.1"}])
    assert fits(pod("same", ports=[{"containerPort": 80, "hostPort": 80}]), [n], [taken]) == set()  # 0.0.0.0
    assert fits(pod("other-ip", ports=[{"containerPort": 80, "hostPort": 80, "hostIP": "10.0.0.2"}]),
                [n], [taken]) == {"n"}
    assert fits(pod("udp", ports=[{"containerPort": 80, "hostPort": 80, "protocol": "UDP"}]), [n], [taken]) == {"n"}
    assert host_ports(taken) == [("TCP", "10.0.0.1", 80)]


def _anti(selector: str, key="kubernetes.io/hostname", namespaces=None, namespace_selector=None):
    term = {"labelSelector": syntax.parse_label_selector(selector), "topologyKey": key}
    if namespaces:
        term["namespaces"] = namespaces
    if namespace_selector is not None:
        term["namespaceSelector"] = namespace_selector
    return term


def test_pod_anti_affinity_both_ways_and_by_namespace():
    a, b = node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z1"})
    web = pod("web", labels={"app": "web"}, node_name="a", phase="Running",
              affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_anti("app=web")]}})
    # an incoming app=web Pod with no rules of its own is repelled by web's rule (symmetry)
    rows = {r["node"]: r for r in check_rows(pod("w2", labels={"app": "web"}), Snapshot(nodes=[a, b], pods=[web]))}
    assert not rows["a"]["fits"] and rows["b"]["fits"]
    assert rows["a"]["scheduler reason"] == "node(s) didn't satisfy existing pods anti-affinity rules"
    # the same labels in another namespace are not selected by web's term (its own namespace only)
    assert fits(pod("w3", ns="other", labels={"app": "web"}), [a, b], [web]) == {"a", "b"}
    # zone-wide anti-affinity of the incoming Pod: both nodes share zone z1
    zone = pod("z", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _anti("app=web", key="zone")]}})
    assert fits(zone, [a, b], [web]) == set()
    # namespaceSelector {} looks at every namespace
    everywhere = pod("e", ns="other", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _anti("app=web", namespace_selector={})]}})
    assert fits(everywhere, [a, b], [web]) == {"b"}
    labelled = pod("l", ns="other", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _anti("app=web", namespace_selector={"matchLabels": {"team": "luffy"}})]}})
    assert fits(labelled, [a, b], [web], {"default": {"team": "luffy"}, "other": {}}) == {"b"}


def test_pod_affinity_needs_a_match_except_for_the_first_of_a_self_affine_group():
    a, b = node("a"), node("b", labels={"rack": "r1"})
    term = _anti("app=db")
    first = pod("db-0", labels={"app": "db"}, affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term]}})
    assert fits(first, [a, b]) == {"a", "b"}  # nothing matches yet and it matches itself
    stranger = pod("s", labels={"app": "web"}, affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term]}})
    assert fits(stranger, [a, b]) == set()
    placed = pod("db-1", labels={"app": "db"}, node_name="b", phase="Running")
    assert fits(stranger, [a, b], [placed]) == {"b"}
    rack = pod("r", labels={"app": "web"}, affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [_anti("app=db", key="rack")]}})
    row = {r["node"]: r for r in check_rows(rack, Snapshot(nodes=[a, b], pods=[placed]))}
    assert "lacks topology label rack" in row["a"]["pod affinity"] and row["b"]["fits"]


def test_scheduler_style_summary_and_caveats():
    a, b = node("a", taints=[{"key": "k", "effect": "NoSchedule"}]), node("b", labels={"x": "1"})
    p = pod("p", nodeSelector={"x": "2"}, volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}])
    rows = check_rows(p, Snapshot(nodes=[a, b], pods=[]))
    assert summary(rows) == ("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
                             "1 node(s) had untolerated taint(s).")
    assert scheduler_summary("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
                             "2 No preemption victims found.") == "0/2 nodes are available: 2 Insufficient cpu."
    assert any("PersistentVolumeClaims" in c for c in unexplained_features(p))


def _spread(selector="app=s", key="kubernetes.io/hostname", **extra):
    return {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": syntax.parse_label_selector(selector), **extra}


def test_topology_spread_counts_eligible_domains_and_the_pod_itself():
    tainted = node("m", taints=[{"key": "role", "effect": "NoSchedule"}])
    a, b = node("a"), node("b")
    placed = [pod("s1", labels={"app": "s"}, node_name="a", phase="Running"),
              pod("s2", labels={"app": "s"}, node_name="b", phase="Running")]
    # nodeTaintsPolicy Ignore (default): the tainted node is a domain with 0 Pods, so a and b are at skew 2
    third = pod("s3", labels={"app": "s"}, topologySpreadConstraints=[_spread()])
    rows = {r["node"]: r for r in check_rows(third, Snapshot(nodes=[tainted, a, b], pods=placed))}
    assert not any(r["fits"] for r in rows.values())
    assert rows["a"]["topology spread"] == "kubernetes.io/hostname=a: skew 2 > maxSkew 1 (1 here, fewest 0)"
    assert rows["a"]["scheduler reason"] == "node(s) didn't match pod topology spread constraints"
    # nodeTaintsPolicy Honor leaves the tainted node out: the fewest is 1, skew 1 is allowed
    honour = pod("s4", labels={"app": "s"}, topologySpreadConstraints=[_spread(nodeTaintsPolicy="Honor")])
    assert fits(honour, [tainted, a, b], placed) == {"a", "b"}
    # a node without the topology key fails with its own reason; a Pod the selector misses adds no skew
    zone = pod("z", labels={"app": "other"}, topologySpreadConstraints=[_spread(key="zone")])
    row = check_rows(zone, Snapshot(nodes=[a], pods=placed))[0]
    assert row["scheduler reason"] == "node(s) didn't match pod topology spread constraints (missing required label)"
    # minDomains larger than the domains there are makes the fewest 0
    few = pod("f", labels={"app": "s"}, topologySpreadConstraints=[_spread(nodeTaintsPolicy="Honor", minDomains=3)])
    assert fits(few, [tainted, a, b], placed) == set()
    # explained after the fact, a bound Pod does not count itself: a has 0 others, b has 1, so only a
    bound = {**placed[0], "spec": {**placed[0]["spec"], "topologySpreadConstraints": [_spread()]}}
    assert fits(bound, [tainted, a, b], [bound, placed[1]]) == {"a"}


# ---- syntax ------------------------------------------------------------------------------------------
def test_short_forms_follow_kubectl():
    assert syntax.parse_taint("smoke=true:NoSchedule") == {"key": "smoke", "value": "true", "effect": "NoSchedule"}
    assert syntax.parse_taint("dedicated:NoExecute") == {"key": "dedicated", "effect": "NoExecute"}
    assert syntax.parse_taint({"key": "a", "value": "b", "effect": "PreferNoSchedule"})["effect"] == "PreferNoSchedule"
    assert syntax.parse_taint_removal("smoke:NoSchedule-") == ("smoke", "NoSchedule")
    assert syntax.parse_taint_removal("smoke-") == ("smoke", None)
    assert syntax.parse_labels(["disktype=ssd", "old-"]) == {"disktype": "ssd", "old": None}
    assert syntax.parse_toleration("smoke=true:NoSchedule") == {"key": "smoke", "operator": "Equal", "value": "true",
                                                                "effect": "NoSchedule"}
    assert syntax.parse_toleration("drunk") == {"key": "drunk", "operator": "Exists"}
    assert syntax.parse_toleration("*") == {"operator": "Exists"}
    assert syntax.parse_toleration("k=v:NoExecute:60")["tolerationSeconds"] == 60
    assert syntax.parse_term("kubernetes.io/hostname notin (k8s-slave1,k8s-slave2), cores>2, !gpu") == {
        "matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["k8s-slave1", "k8s-slave2"]},
            {"key": "cores", "operator": "Gt", "values": ["2"]}, {"key": "gpu", "operator": "DoesNotExist"}]}
    assert syntax.parse_weighted_term("50:disktype in (ssd)")["weight"] == 50
    assert syntax.parse_label_selector("app=web, tier in (a,b)") == {
        "matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}


@pytest.mark.parametrize("bad", ["smoke=true", "smoke=true:Sometimes", ":NoSchedule"])
def test_bad_taints_are_refused(bad):
    with pytest.raises(syntax.SyntaxProblem):
        syntax.parse_taint(bad)


@pytest.mark.parametrize("bad", ["k=v:NoSchedule:60", "k:Maybe", {"key": "k", "operator": "Gt"}])
def test_bad_tolerations_are_refused(bad):
    with pytest.raises(syntax.SyntaxProblem):
        syntax.parse_toleration(bad)


# ---- drain decisions, board ------------------------------------------------------------------------
def _owned(kind):
    return {"ownerReferences": [{"kind": kind, "name": "x", "controller": True, "uid": "u", "apiVersion": "v1"}]}


@pytest.mark.parametrize("meta,spec,options,action,why", [
    (_owned("ReplicaSet"), {}, {}, "evict", "managed by ReplicaSet"),
    ({}, {}, {}, "refuse", "no controller"),
    ({}, {}, {"force": True}, "evict", "force"),
    (_owned("DaemonSet"), {}, {}, "skip", "DaemonSet"),
    (_owned("DaemonSet"), {}, {"ignore_daemonsets": False}, "refuse", "ignore_daemonsets"),
    (_owned("ReplicaSet"), {"volumes": [{"name": "cache", "emptyDir": {}}]}, {}, "refuse", "emptyDir cache"),
    (_owned("ReplicaSet"), {"volumes": [{"name": "cache", "emptyDir": {}}]}, {"delete_emptydir_data": True},
     "evict", "WARNING emptyDir cache"),
    ({"annotations": {"kubernetes.io/config.mirror": "x"}}, {}, {}, "skip", "mirror"),
])
def test_drain_decides_like_kubectl(meta, spec, options, action, why):
    p = pod("p", node_name="n", phase="Running", **spec)
    p["metadata"].update(meta)
    decided, reason = drain._decide(p, drain.DrainOptions(**options))
    assert decided == action and why in reason


def test_node_board_from_a_recorded_snapshot():
    board = node_board(load(FIXTURES / "resources-ports-cordon.json")).set_index("node")
    assert board.loc["k8s-slave2", "conditions"].endswith("SchedulingDisabled")
    assert board.loc["k8s-slave1", "cpu requested"] == "1200m / 2 (60%)"
    assert board.loc["k8s-slave1", "pods"] == "2 / 110"


# ---- diagnoses: why a wait cannot succeed ----------------------------------------------------------------
def _budget(*, generation=1, observed=1, allowed=0, healthy=4, expected=4, disrupted=None, **spec):
    return {"metadata": {"name": "web", "namespace": "demo", "generation": generation},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
            "status": {"observedGeneration": observed, "disruptionsAllowed": allowed, "currentHealthy": healthy,
                       "expectedPods": expected, **({"disruptedPods": disrupted} if disrupted else {})}}


@pytest.mark.parametrize("budget", [
    _budget(generation=2, observed=1),                        # its new spec is not computed yet
    _budget(allowed=1),                                       # it allows an eviction now
    _budget(minAvailable=4, disrupted={"web-1": "2026-01-01T00:00:00Z"}),  # an eviction is being counted
], ids=["not-computed", "allows-one", "eviction-in-flight"])
def test_a_budget_that_waiting_can_change_is_not_diagnosed(budget):
    assert diagnose.budget_blocks(None, budget) is None


def test_a_budget_that_allows_nothing_with_every_pod_healthy_is_blocked_for_good():
    key, reason = diagnose.budget_blocks(None, _budget(minAvailable=4))
    assert reason.startswith("PodDisruptionBudget demo/web (minAvailable 4) allows no disruption with all 4")
    assert "kubectl -n demo edit pdb web" in reason and key == ("all-healthy", "demo/web")


def test_the_scheduler_words_for_a_pod_it_cannot_place():
    stuck = pod("web-2", ns="demo")
    stuck["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                      "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 "
                                                 "nodes are available: 3 No preemption victims found."}]
    tried = pod("web-1", ns="demo")
    tried["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "SchedulerError"}]
    bound = pod("web-0", ns="demo", node_name="n1")
    assert diagnose.cannot_place([bound, tried]) is None
    key, reason = diagnose.cannot_place([bound, tried, stuck])
    assert key == "demo/web-2"
    assert reason.startswith("the scheduler cannot place Pod demo/web-2: 0/3 nodes are available: 3 Insufficient cpu.")
    assert "preemption" not in reason


def test_steady_passes_a_verdict_on_only_once_it_held():
    patient, eager = diagnose.Steady(seconds=3600), diagnose.Steady(seconds=0)
    assert patient(("k", "why")) is None and patient(("k", "why")) is None
    assert eager(("k", "why")) == "why"
    assert eager(None) is None and eager(("other", "because")) == "because"


def _deployment(generation, observed, conditions=()):
    return {"metadata": {"name": "web", "namespace": "demo", "generation": generation},
            "status": {"observedGeneration": observed, "conditions": list(conditions)}}


def test_a_controller_that_does_not_act_or_cannot_create_pods_is_named():
    idle = diagnose.NoController("Deployment", "Deployment controller", seconds=0)
    assert idle(_deployment(1, 1)) is None
    assert idle(_deployment(2, 1)) is None  # first sight of the lag starts the clock
    assert "no Deployment controller has acted on Deployment demo/web" in idle(_deployment(2, 1))
    refused = diagnose.NoController("Deployment", "Deployment controller")
    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
               "message": 'pods "web-1" is forbidden: exceeded quota: pods'}
    assert refused(_deployment(1, 1, [failure])) == ("Deployment demo/web cannot create its Pods: FailedCreate: "
                                                     'pods "web-1" is forbidden: exceeded quota: pods')


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0, -5, "120"])
def test_a_drain_needs_a_positive_finite_timeout(timeout):
    with pytest.raises(KubebookError, match="positive, finite"):
        drain._check_timeout(timeout)


def test_one_taint_per_node_is_checked_before_any_change():
    assert nodes.pair(["a", "b"], ["x=1:NoSchedule", "y=2:NoSchedule"]) == {"a": "x=1:NoSchedule", "b": "y=2:NoSchedule"}
    with pytest.raises(KubebookError, match="2 node\\(s\\) but 1 taint"):
        nodes.pair(["a", "b"], ["x=1:NoSchedule"])
    assert [r.scope for r in nodes.refs({"a": 1, "b": 2})] == ["node/a", "node/b"]


def test_nothing_to_explain_says_so_in_every_table():
    why = pending.WhyPending.nothing("demo", "app=web")
    assert why.table.empty and "node affinity" in why.table.columns
    said = why.side_by_side().set_index("source")["says"]
    assert said["kubebook (recomputed filters)"] == "no Pod in namespace demo matching app=web to explain (pass pod=<name>)"
    assert said["verdicts agree"] == "scheduler has not decided"


def test_drain_demo_scope_names_the_namespace_only_when_there_is_a_demo():
    assert drain.demo_scope("") == [] and drain.demo_scope("kubebook-drain") == ["namespace/kubebook-drain"]
