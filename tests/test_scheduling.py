"""Scheduling on the lab's real kube-scheduler: node verbs, drain, the node board, and the
agreement between our explanation and the scheduler over a set of scenarios.

Every test acts through a confirmed Plan whose clean-up deletes what it made and restores the
nodes from their backups (the session lab is shared); :func:`nodes.differences` checks that.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import uuid

import pytest
from kubernetes import client

from kubebook import ownership
from kubebook.objects import Ref
from kubebook.plan import Plan, StepFailed
from kubebook.scheduling import drain, nodes, pending, workloads
from kubebook.scheduling.explain import Snapshot, check_rows, scheduler_summary, summary
from kubebook.waits import WaitBlocked, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("run")]  # each test a run of its own (conftest.run)

NODES = ["k8s-master", "k8s-slave1", "k8s-slave2"]
SLAVES = {"k8s-slave1", "k8s-slave2"}
_names = itertools.count()
OWN = "only the node it is bound to"  # explained after the fact, its twins now occupy the other nodes
AGREE = "no fixed answer"  # depends on where the scheduler put the others; only the agreement is checked


def acting(api, target: str, kind: str, also=()) -> Plan:
    """A plan confirmed with exactly its scope (what a runbook's dry run would print)."""
    scope = Plan(target=target, kind=kind, also=also, cluster=api, log=lambda m: None).confirm_text
    return Plan(target=target, kind=kind, also=also, confirm=scope, cluster=api, log=lambda m: None)


def dry(api, target: str, kind: str, also=()) -> Plan:
    return Plan(target=target, kind=kind, also=also, cluster=api, log=lambda m: None)


@contextlib.contextmanager
def scratch(api, *, node_changes=()):
    """A fresh namespace and node changes (``change(plan)``: label / taint / cordon), all undone by
    the plan's clean-up afterwards. Yields (namespace, plan)."""
    namespace = f"sched-{next(_names)}-{uuid.uuid4().hex[:4]}"
    # a just-started lab's nodes briefly carry the controller's not-ready taint; scenarios need it gone
    wait_for(api, "nodes", lambda ns: not any(t["key"].startswith("node.kubernetes.io/not-ready")
                                              for n in ns.values() for t in n["spec"].get("taints") or []),
             timeout=60, what="no not-ready taint on any node")
    before = nodes.node_state(api, NODES)
    plan = acting(api, namespace, "namespace", nodes.refs(NODES))
    try:
        workloads.ensure_namespace(plan, namespace)
        for change in node_changes:
            change(plan)
        if node_changes:  # the scheduler's cache lags the API a little; scenarios must not race it
            nodes.wait_scheduler_caught_up(plan, namespace)
        yield namespace, plan
    finally:
        plan.cleanup()
        assert not nodes.differences(api, before)


def pod(name, *, labels=None, requests=None, ports=None, **rules):
    """A bare Pod with :func:`workloads.placement_rules` ``**rules``."""
    container = {"name": "c", "image": "nginx:1.27"}
    if requests:
        container["resources"] = {"requests": requests}
    if ports:
        container["ports"] = [{"containerPort": p, "hostPort": p} for p in ports]
    spec = {"containers": [container], "terminationGracePeriodSeconds": 0,
            **workloads.placement_rules(app=(labels or {}).get("app", name), **rules)}
    return {"metadata": {"name": name, "labels": labels or {"app": name}}, "spec": spec}


def decided(api, namespace, count):
    """Wait until ``count`` Pods exist and each is bound or marked Unschedulable by the scheduler."""
    return wait_for(api, "pods", lambda ps: len(ps) == count and all(workloads._decided(p) for p in ps.values()),
                    namespace=namespace, timeout=60, what=f"{count} Pods decided")


def run_scenario(api, namespace, pods, expected):
    """Create ``pods`` one by one (each decided before the next), then compare every verdict.

    ``expected`` maps a Pod to the nodes that must fit it by our explanation (documenting the
    scenario); the scheduler must agree: Pending ⇔ no node fits, bound ⇔ its node fits.
    """
    core = client.CoreV1Api(api)
    for i, body in enumerate(pods, 1):
        core.create_namespaced_pod(namespace, body)
        decided(api, namespace, i)
    snap = Snapshot.take(api)
    verdicts = {}
    for body in pods:
        name = body["metadata"]["name"]
        live = snap.pod(namespace, name)
        rows = check_rows(live, snap)
        fits = {r["node"] for r in rows if r["fits"]}
        bound = live["spec"].get("nodeName")
        verdicts[name] = (fits, bound)
        want = {bound} if expected[name] == OWN else fits if expected[name] == AGREE else expected[name]
        assert fits == want, f"{name}: we say {sorted(fits)}, scenario expects {sorted(want)}"
        if bound:
            assert bound in fits, f"{name}: scheduler chose {bound}, we say only {sorted(fits)} fit"
        else:
            condition = next(c for c in live["status"]["conditions"] if c["type"] == "PodScheduled")
            assert condition["reason"] == "Unschedulable"
            assert not fits, f"{name}: Pending, but we say {sorted(fits)} fit"
            # the scheduler's per-node reasons, counted as it counts them
            assert summary(rows) == scheduler_summary(condition["message"]), name
    return verdicts


def tol(key=None, *, value=None, effect=None, operator=None, seconds=None):
    t = {k: v for k, v in (("key", key), ("value", value), ("effect", effect), ("tolerationSeconds", seconds))
         if v is not None}
    t["operator"] = operator or ("Equal" if value is not None else "Exists")
    return t


CONTROL_PLANE = tol("node-role.kubernetes.io/control-plane", effect="NoSchedule")


# ---- agreement scenarios --------------------------------------------------------------------------
def test_agreement_taints_and_tolerations(api):
    changes = [lambda plan: nodes.taint(plan, "k8s-slave1", "smoke=true:NoSchedule"),
               lambda plan: nodes.taint(plan, "k8s-slave2", "drunk=true:NoExecute"),
               lambda plan: nodes.taint(plan, "k8s-slave2", "noisy=yes:PreferNoSchedule")]
    with scratch(api, node_changes=changes) as (ns, _):
        run_scenario(api, ns, [
            pod("none"),
            pod("smoke-equal", tolerations=[tol("smoke", value="true", effect="NoSchedule")]),
            pod("smoke-wrong-value", tolerations=[tol("smoke", value="false", effect="NoSchedule")]),
            pod("drunk-exists", tolerations=[tol("drunk")]),
            pod("drunk-wrong-effect", tolerations=[tol("drunk", effect="NoSchedule")]),
            pod("drunk-seconds", tolerations=[tol("drunk", effect="NoExecute", seconds=3600)]),
            pod("everything", tolerations=[tol()]),
        ], expected={"none": set(), "smoke-equal": {"k8s-slave1"}, "smoke-wrong-value": set(),
                     "drunk-exists": {"k8s-slave2"}, "drunk-wrong-effect": set(),
                     "drunk-seconds": {"k8s-slave2"}, "everything": set(NODES)})


def test_agreement_node_selector_and_affinity_operators(api):
    changes = [lambda plan: nodes.label(plan, "k8s-master", "disktype=ssd"),
               lambda plan: nodes.label(plan, "k8s-slave1", ["disktype=hdd", "cores=4"]),
               lambda plan: nodes.label(plan, "k8s-slave2", "cores=16")]
    with scratch(api, node_changes=changes) as (ns, _):
        run_scenario(api, ns, [
            pod("selector-ssd", node_selector={"disktype": "ssd"}),
            pod("selector-ssd-tolerating", node_selector={"disktype": "ssd"}, tolerations=[CONTROL_PLANE]),
            pod("selector-hdd", node_selector={"disktype": "hdd"}),
            pod("selector-gpu", node_selector={"gpu": "true"}),
            pod("gt-8", required_node_terms=["cores>8"]),
            pod("lt-8", required_node_terms=["cores<8"]),
            pod("notin-slaves", required_node_terms=["kubernetes.io/hostname notin (k8s-slave1,k8s-slave2)"]),
            pod("notin-slaves-tolerating", required_node_terms=["kubernetes.io/hostname notin (k8s-slave1,k8s-slave2)"],
                tolerations=[CONTROL_PLANE]),
            pod("terms-ored", required_node_terms=["kubernetes.io/hostname in (k8s-slave1)", "cores>10"]),
            pod("expressions-anded", required_node_terms=["kubernetes.io/hostname in (k8s-slave1), cores>10"]),
            pod("exists", required_node_terms=["cores"]),
            pod("does-not-exist", required_node_terms=["!cores"], tolerations=[CONTROL_PLANE]),
            pod("preferred-only", preferred_node_terms=["50:disktype in (ssd,sas)"]),
            pod("selector-and-affinity", node_selector={"disktype": "hdd"}, required_node_terms=["cores>8"]),
        ], expected={"selector-ssd": set(), "selector-ssd-tolerating": {"k8s-master"},
                     "selector-hdd": {"k8s-slave1"}, "selector-gpu": set(), "gt-8": {"k8s-slave2"},
                     "lt-8": {"k8s-slave1"}, "notin-slaves": set(), "notin-slaves-tolerating": {"k8s-master"},
                     "terms-ored": SLAVES, "expressions-anded": set(), "exists": SLAVES,
                     "does-not-exist": {"k8s-master"}, "preferred-only": SLAVES, "selector-and-affinity": set()})


def test_agreement_pod_affinity_and_anti_affinity(api):
    with scratch(api) as (ns, _):
        verdicts = run_scenario(api, ns, [
            pod("web-1", labels={"app": "web"}, pod_anti_affinity="required"),
            pod("web-2", labels={"app": "web"}, pod_anti_affinity="required"),
            pod("web-3", labels={"app": "web"}, pod_anti_affinity="required"),
            pod("next-to-web", pod_affinity="required", pod_affinity_to="app=web"),
            pod("next-to-nothing", pod_affinity="required", pod_affinity_to="app=nothing"),
            # the first Pod of a group with affinity to itself may go anywhere (no such Pod exists yet)
            pod("solo", labels={"app": "solo"}, pod_affinity="required", pod_affinity_to="app=solo"),
            # web's own anti-affinity selects app=web, so another app=web Pod without any rule is repelled
            pod("web-intruder", labels={"app": "web"}),
            pod("web-preferred", labels={"app": "web"}, pod_anti_affinity="preferred"),
        ], expected={"web-1": OWN, "web-2": OWN, "web-3": set(), "next-to-web": SLAVES,
                     "next-to-nothing": set(), "solo": SLAVES, "web-intruder": set(), "web-preferred": set()})
        assert {verdicts["web-1"][1], verdicts["web-2"][1]} == SLAVES  # one per node


def test_agreement_resources_and_host_ports(api):
    with scratch(api) as (ns, _):
        run_scenario(api, ns, [
            pod("cpu-1", requests={"cpu": "1500m"}),
            pod("cpu-2", requests={"cpu": "1500m"}),
            pod("cpu-3", requests={"cpu": "1500m"}),
            pod("small", requests={"cpu": "400m", "memory": "1Gi"}),
            pod("memory-big", requests={"memory": "4100Mi"}),
            pod("port-1", ports=[8080]),
            pod("port-2", ports=[8080]),
            pod("port-3", ports=[8080]),
            pod("port-other", ports=[9090]),
        ], expected={"cpu-1": OWN, "cpu-2": OWN, "cpu-3": set(), "small": SLAVES, "memory-big": set(),
                     "port-1": OWN, "port-2": OWN, "port-3": set(), "port-other": SLAVES})


def test_agreement_topology_spread(api):
    def spread(selector, **extra):
        return [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": selector}, **extra}]

    def spread_pod(name, group, **extra):
        body = pod(name, labels={"group": group})
        body["spec"]["topologySpreadConstraints"] = spread({"group": group}, **extra)
        return body

    with scratch(api) as (ns, _):
        run_scenario(api, ns, [
            # tainted k8s-master still counts as an empty domain (nodeTaintsPolicy defaults to Ignore)
            spread_pod("ignore-1", "ignore"), spread_pod("ignore-2", "ignore"), spread_pod("ignore-3", "ignore"),
            # with Honor it does not: the third replica may join either slave
            spread_pod("honor-1", "honor", nodeTaintsPolicy="Honor"),
            spread_pod("honor-2", "honor", nodeTaintsPolicy="Honor"),
            spread_pod("honor-3", "honor", nodeTaintsPolicy="Honor"),
        ], expected={"ignore-1": OWN, "ignore-2": OWN, "ignore-3": set(),
                     "honor-1": AGREE, "honor-2": AGREE, "honor-3": SLAVES})


def test_agreement_cordon(api):
    with scratch(api, node_changes=[lambda plan: nodes.cordon(plan, "k8s-slave1")]) as (ns, _):
        run_scenario(api, ns, [
            pod("plain"),
            pod("tolerates-unschedulable", tolerations=[tol("node.kubernetes.io/unschedulable", effect="NoSchedule")]),
            pod("pinned-to-cordoned", node_selector={"kubernetes.io/hostname": "k8s-slave1"}),
        ], expected={"plain": {"k8s-slave2"}, "tolerates-unschedulable": SLAVES, "pinned-to-cordoned": set()})


# ---- node verbs ------------------------------------------------------------------------------------
def _taints(api, node):
    return {(t["key"], t.get("value"), t["effect"]) for t in nodes.get_node(api, node)["spec"].get("taints") or []
            if not t["key"].startswith("node.kubernetes.io/")}


def test_label_taint_cordon_are_idempotent_and_restored(api):
    before = nodes.node_state(api, ["k8s-slave1"])
    plan = acting(api, "k8s-slave1", "node")
    try:
        assert nodes.label(plan, "k8s-slave1", "disktype=ssd") == "patched"
        assert nodes.label(plan, "k8s-slave1", "disktype=ssd") == "unchanged"
        assert "k8s-slave1" in nodes.nodes_matching(api, "disktype in (ssd,sas)")
        nodes.taint(plan, "k8s-slave1", ["smoke=true:NoSchedule", "smoke=true:NoExecute"])
        assert nodes.taint(plan, "k8s-slave1", "smoke=true:NoSchedule") == "unchanged"
        nodes.taint(plan, "k8s-slave1", "smoke=false:NoSchedule")  # same key and effect: new value
        assert _taints(api, "k8s-slave1") == {("smoke", "false", "NoSchedule"), ("smoke", "true", "NoExecute")}
        nodes.untaint(plan, "k8s-slave1", "smoke:NoExecute-")
        assert _taints(api, "k8s-slave1") == {("smoke", "false", "NoSchedule")}
        nodes.untaint(plan, "k8s-slave1", "smoke-")
        assert nodes.untaint(plan, "k8s-slave1", "smoke-") == "unchanged"
        assert nodes.cordon(plan, "k8s-slave1") == "patched"
        assert nodes.cordon(plan, "k8s-slave1") == "unchanged"
        assert nodes.node_table(api).set_index("node").loc["k8s-slave1", "status"].endswith("SchedulingDisabled")
        backup = plan.record.changed[nodes.refs(["k8s-slave1"])[0]].backup
        assert backup.stat().st_mode & 0o777 == 0o600  # taken before the first change
    finally:
        plan.cleanup()
    assert nodes.unchanged(api, before)
    assert not nodes.get_node(api, "k8s-slave1")["spec"].get("unschedulable")


def test_dry_run_plan_changes_no_node(api):
    before = nodes.node_state(api, NODES)
    plan = dry(api, "k8s-slave1", "node")
    nodes.label(plan, "k8s-slave1", "disktype=ssd")
    nodes.taint(plan, "k8s-slave1", "smoke=true:NoSchedule")
    nodes.cordon(plan, "k8s-slave1")
    assert list(plan.table()["status"]) == ["planned"] * 3
    assert set(plan.objects()["after"]) == {"backed up, patched, restored at clean-up"}
    assert nodes.node_state(api, NODES) == before


def test_a_node_outside_the_confirmation_is_refused_before_it_changes(api):
    from kubebook.plan import OutOfScope
    before = nodes.node_state(api, NODES)
    plan = acting(api, "k8s-slave1", "node")
    with pytest.raises(OutOfScope, match="k8s-slave2"):
        nodes.taint(plan, "k8s-slave2", "smoke=true:NoSchedule")
    assert nodes.node_state(api, NODES) == before


# ---- drain -------------------------------------------------------------------------------------------
@pytest.fixture
def drain_lab(api):
    """Namespace with 4 replicas of `web` spread over the workers (2 on k8s-slave2); the drained
    node is put back by the plan's clean-up (drain(..., restore=True))."""
    with scratch(api) as (ns, plan):
        workloads.apply_deployment(plan, ns, workloads.deployment("web", replicas=4, pod_anti_affinity="preferred"))
        workloads.settle(plan, ns, "web")
        yield ns, plan


def _on(api, node, namespace):
    return sorted(p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(
        namespace, field_selector=f"spec.nodeName={node}").items if not p.metadata.deletion_timestamp)


def test_drain_says_within_10s_that_a_budget_allows_no_disruption_then_drains_when_relaxed(api, drain_lab):
    ns, plan = drain_lab
    web = {"matchLabels": {"app": "web"}}
    drain.pod_disruption_budget(plan, ns, "web", selector=web, min_available=4)
    assert drain.budget_ready(plan, ns, "web", healthy=True).startswith("allows 0 disruption(s), 4 of 4")
    victims = _on(api, "k8s-slave2", ns)
    assert victims, "the preferred anti-affinity should have put replicas on k8s-slave2"
    with pytest.raises(StepFailed) as info:  # said within 10 s, or the timeout would speak instead
        drain.drain(plan, "k8s-slave2", timeout=10, restore=True, progress=False)
    blocked = info.value.cause
    assert isinstance(blocked, drain.DrainBlocked)
    assert "allows no disruption with all 4 of its Pods healthy" in str(blocked)
    assert "run the drain again to resume" in str(blocked) and "\n" not in str(blocked)
    result = blocked.result
    assert set(result["pod"]) == set(victims) and set(result["outcome"]) == {"blocked"}
    assert _on(api, "k8s-slave2", ns) == victims  # nothing was deleted
    assert nodes.get_node(api, "k8s-slave2")["spec"].get("unschedulable")

    # a budget that allows one disruption at a time lets the whole drain through (a re-run resumes)
    drain.pod_disruption_budget(plan, ns, "web", selector=web, max_unavailable=1)
    drain.budget_ready(plan, ns, "web")
    result = drain.drain(plan, "k8s-slave2", timeout=60, restore=True, progress=False)
    assert set(result["outcome"]) == {"evicted"} and set(result["pod"]) == set(victims)
    assert _on(api, "k8s-slave2", ns) == []
    assert workloads.settle(plan, ns, "web").endswith("0 unschedulable")  # recreated on the other nodes


def test_drain_dry_run_changes_nothing_and_explains_each_pod(api, drain_lab):
    ns, scratch_plan = drain_lab
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, {**pod("bare"), "spec": {**pod("bare")["spec"],
                                                           "nodeName": "k8s-slave2"}})
    core.create_namespaced_pod(ns, {"metadata": {"name": "scratchy", "labels": {"app": "scratchy"}},
                                    "spec": {"nodeName": "k8s-slave2", "terminationGracePeriodSeconds": 0,
                                             "containers": [{"name": "c", "image": "nginx:1.27"}],
                                             "volumes": [{"name": "tmp", "emptyDir": {}}]}})
    workloads.apply_daemonset(scratch_plan, ns, workloads.daemonset("agent"))
    workloads.wait_daemonset(scratch_plan, ns, "agent")
    wait_for(api, "pods", lambda ps: all(ps.get(n, {}).get("status", {}).get("phase") == "Running"
                                         for n in ("bare", "scratchy")), namespace=ns, timeout=60, what="bare pods")
    before = _on(api, "k8s-slave2", ns)

    preview = drain.drain_preview(api, "k8s-slave2").set_index("pod")
    mine = preview[preview["namespace"] == ns]
    assert mine.loc["bare", "action"] == "refuse" and "no controller" in mine.loc["bare", "why"]
    assert mine.loc["scratchy", "action"] == "refuse"
    agent = [p for p in mine.index if p.startswith("agent-")]
    assert agent and mine.loc[agent[0], "action"] == "skip"
    assert set(mine.loc[[p for p in mine.index if p.startswith("web-")], "action"]) == {"evict"}

    plan = dry(api, "k8s-slave2", "node")
    with pytest.raises(drain.DrainRefused):  # refused before anything changes, dry run or not
        drain.drain(plan, "k8s-slave2")
    forced = drain.drain_preview(api, "k8s-slave2", force=True, delete_emptydir_data=True,
                                 ignore_daemonsets=False).set_index("pod")
    assert forced.loc["bare", "action"] == "evict"
    assert "emptyDir tmp data is lost" in forced.loc["scratchy", "why"]
    assert forced.loc[agent[0], "action"] == "refuse"

    core.delete_namespaced_pod("bare", ns)
    core.delete_namespaced_pod("scratchy", ns)
    wait_for(api, "pods", lambda ps: "bare" not in ps and "scratchy" not in ps, namespace=ns, timeout=60,
             what="bare pods gone")
    result = drain.drain(plan, "k8s-slave2", progress=False)
    assert list(plan.table()["status"]) == ["planned", "planned"]
    assert set(result.loc[result["namespace"] == ns, "action"]) == {"evict", "skip"}  # the dry run's answer
    assert not nodes.get_node(api, "k8s-slave2")["spec"].get("unschedulable")
    assert _on(api, "k8s-slave2", ns) == sorted(set(before) - {"bare", "scratchy"})


def test_force_backs_up_a_pod_nothing_recreates_before_evicting_it(api, drain_lab):
    ns, plan = drain_lab
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, {**pod("bare"), "spec": {**pod("bare")["spec"], "nodeName": "k8s-slave2"}})
    wait_for(api, "pods", lambda ps: ps.get("bare", {}).get("status", {}).get("phase") == "Running",
             namespace=ns, timeout=60, what="bare pod running")
    result = drain.drain(plan, "k8s-slave2", force=True, timeout=60, restore=True, progress=False).set_index("pod")
    assert result.loc["bare", "outcome"] == "evicted"
    backup = plan.record.changed[Ref("Pod", "bare", ns)].backup
    assert result.loc["bare", "detail"] == f"backup {backup}"
    assert backup.stat().st_mode & 0o777 == 0o600
    assert ownership.load_backup(backup)["metadata"]["name"] == "bare"


# ---- waits that say why they cannot succeed -----------------------------------------------------------
# Each provokes its diagnosis with a 10 s timeout: the reason must come before the timeout would.
def test_drain_says_within_10s_that_a_budget_waits_for_a_pod_the_scheduler_cannot_place(api):
    with scratch(api) as (ns, plan):
        # two 1-CPU replicas fill each 2-CPU worker: an evicted replica has nowhere to go
        workloads.apply_deployment(plan, ns, workloads.deployment("full", replicas=4, requests={"cpu": "1"},
                                                                  pod_anti_affinity="preferred"))
        workloads.settle(plan, ns, "full")
        drain.pod_disruption_budget(plan, ns, "full", selector={"matchLabels": {"app": "full"}}, max_unavailable=1)
        drain.budget_ready(plan, ns, "full", healthy=True)
        with pytest.raises(StepFailed) as info:
            drain.drain(plan, "k8s-slave2", timeout=10, restore=True, progress=False)
        message = str(info.value.cause)
        assert f"PodDisruptionBudget {ns}/full (maxUnavailable 1, 3 of 4 healthy) waits for Pod full-" in message
        assert "the scheduler cannot place it: 0/3 nodes are available:" in message and "Insufficient cpu" in message
        assert "run the drain again to resume" in message
        assert info.value.cause.result["outcome"].tolist().count("evicted") == 1


def test_a_daemonset_wait_says_within_10s_that_its_pods_do_not_fit(api):
    with scratch(api) as (ns, plan):
        body = workloads.daemonset("heavy")
        body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "3"}}
        workloads.apply_daemonset(plan, ns, body)
        with pytest.raises(StepFailed) as info:
            workloads.wait_daemonset(plan, ns, "heavy", timeout=10)
        assert isinstance(info.value.cause, WaitBlocked)
        message = str(info.value.cause)
        assert f"the scheduler cannot place Pod {ns}/heavy-" in message and "Insufficient cpu" in message
        assert "\n" not in message


def test_settle_says_within_10s_that_the_replicaset_cannot_create_its_pods(api):
    with scratch(api) as (ns, plan):
        plan.create({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "one-pod"},
                     "spec": {"hard": {"pods": "1"}}}, ns)
        workloads.apply_deployment(plan, ns, workloads.deployment("crowd", replicas=2))
        with pytest.raises(StepFailed) as info:
            workloads.settle(plan, ns, "crowd", timeout=10)
        message = str(info.value.cause)
        assert isinstance(info.value.cause, WaitBlocked)
        assert f"Deployment {ns}/crowd cannot create its Pods: FailedCreate:" in message
        assert "quota: one-pod" in message and "\n" not in message  # exceeded, or not counted yet: refused


# ---- why-pending on live objects, node board ---------------------------------------------------------
def test_why_pending_side_by_side_agrees_with_the_scheduler(api):
    with scratch(api) as (ns, plan):
        workloads.apply_deployment(plan, ns, workloads.deployment("greedy", replicas=2, requests={"cpu": "3"}))
        workloads.settle(plan, ns, "greedy")
        why = pending.why_pending(api, ns, selector="app=greedy")
        assert why.agrees is True and not why.fits
        table = why.table.set_index("node")
        assert table.loc["k8s-slave1", "resources"].startswith("cpu: wants 3, free 2 of 2")
        assert table.loc["k8s-master", "taints"].startswith("untolerated node-role.kubernetes.io/control-plane")
        said = why.side_by_side().set_index("source")["says"]
        assert said["kubebook (recomputed filters)"] == scheduler_summary(why.condition["message"])
        listing = pending.pending_pods(api, namespace=ns)
        assert len(listing) == 2 and (listing["fit nodes"] == 0).all()
        assert (listing["explanation"] == listing["scheduler says"]).all()
        checked = pending.check_placement(plan, ns, "app=greedy")
        assert set(checked["node"]) == {"<pending>"} and set(checked["scheduler agrees"]) == {"yes"}


def test_why_pending_with_nothing_to_explain_says_so(api):
    why = pending.why_pending(api, f"absent-{uuid.uuid4().hex[:6]}")
    assert why.table.empty and why.ours.startswith("no Pod in namespace absent-")
    assert why.side_by_side().set_index("source").loc["verdicts agree", "says"] == "scheduler has not decided"


def test_node_board_widget_follows_changes_by_watch(api):
    from widgets.node_board import NodeBoard
    rendered = threading.Event()
    board = NodeBoard(api, on_render=lambda b: rendered.set() if b.table is not None and
                      "board=yes" in b.table.set_index("node").loc["k8s-slave1", "labels"] else None)
    before = nodes.node_state(api, ["k8s-slave1"])
    plan = acting(api, "k8s-slave1", "node")
    board.start()
    try:
        nodes.label(plan, "k8s-slave1", "board=yes")
        assert rendered.wait(30), "the board never showed the new label"
        row = board.table.set_index("node").loc["k8s-slave1"]
        assert row["pods"].endswith("/ 110") and "/ 2 (" in row["cpu requested"]
    finally:
        board.stop()
        plan.cleanup()
    assert nodes.unchanged(api, before)


def _outputs_text(notebook) -> str:
    """Everything the executed cells printed or displayed (never their source)."""
    import json
    nb = json.loads(notebook.read_text())
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            texts.append("".join(out.get("text", "")) + "".join((out.get("data") or {}).get("text/plain", "")))
    return "\n".join(texts)


def test_course_demo_runbook_dry_run_changes_nothing(lab, api, tmp_path):
    from kubebook import runner
    book = runner.find("scheduling/course-demo")
    before = nodes.node_state(api, NODES)
    values = {k: v for k, v in runner.lab_values(book, lab).items() if k != "confirm"}
    result = runner.run(book, values, output_dir=tmp_path, progress=False)
    shown = _outputs_text(result.notebook)
    namespace = book.parameters["namespace"].default
    assert f"DRY RUN for namespace {namespace} and node/k8s-master" in shown
    assert "would taint node k8s-master" in shown and "would create Pod" in shown  # the barrier too
    assert nodes.node_state(api, NODES) == before
    with pytest.raises(client.ApiException) as info:
        client.CoreV1Api(api).read_namespace(namespace)
    assert info.value.status == 404
