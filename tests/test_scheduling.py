"""Scheduling on the lab's real kube-scheduler: node verbs, drain, the node board, and the
agreement between our explanation and the scheduler over a set of scenarios.

Every test that changes a node restores it in ``finally`` (the session lab is shared), and
checks the restore with :func:`nodes.unchanged`.
"""
from __future__ import annotations

import contextlib
import itertools
import threading

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubebook.plan import Plan
from kubebook.scheduling import drain, nodes, pending, workloads
from kubebook.scheduling.explain import Snapshot, check_rows, scheduler_summary, summary
from kubebook.waits import wait_for

pytestmark = pytest.mark.lab

NODES = ["k8s-master", "k8s-slave1", "k8s-slave2"]
SLAVES = {"k8s-slave1", "k8s-slave2"}
_names = itertools.count()
OWN = "only the node it is bound to"  # explained after the fact, its twins now occupy the other nodes
AGREE = "no fixed answer"  # depends on where the scheduler put the others; only the agreement is checked


@contextlib.contextmanager
def scratch(api, *, node_changes=None):
    """A fresh namespace, and node changes (label / taint / cordon) undone afterwards."""
    namespace = f"sched-{next(_names)}"
    # a just-started lab's nodes briefly carry the controller's not-ready taint; scenarios need it gone
    wait_for(api, "nodes", lambda ns: not any(t["key"].startswith("node.kubernetes.io/not-ready")
                                              for n in ns.values() for t in n["spec"].get("taints") or []),
             timeout=60, what="no not-ready taint on any node")
    before = nodes.node_state(api, NODES)
    try:
        workloads.ensure_namespace(api, namespace)
        for change in node_changes or []:
            change()
        if node_changes:  # the scheduler's cache lags the API a little; scenarios must not race it
            nodes.wait_scheduler_caught_up(api, namespace)
        yield namespace
    finally:
        nodes.restore(api, before)
        workloads.delete_namespace(api, namespace, timeout=120)
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
    changes = [lambda: nodes.taint(api, "k8s-slave1", "smoke=true:NoSchedule"),
               lambda: nodes.taint(api, "k8s-slave2", "drunk=true:NoExecute"),
               lambda: nodes.taint(api, "k8s-slave2", "noisy=yes:PreferNoSchedule")]
    with scratch(api, node_changes=changes) as ns:
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
    changes = [lambda: nodes.label(api, "k8s-master", "disktype=ssd"),
               lambda: nodes.label(api, "k8s-slave1", ["disktype=hdd", "cores=4"]),
               lambda: nodes.label(api, "k8s-slave2", "cores=16")]
    with scratch(api, node_changes=changes) as ns:
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
    with scratch(api) as ns:
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
    with scratch(api) as ns:
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

    with scratch(api) as ns:
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
    with scratch(api, node_changes=[lambda: nodes.cordon(api, "k8s-slave1")]) as ns:
        run_scenario(api, ns, [
            pod("plain"),
            pod("tolerates-unschedulable", tolerations=[tol("node.kubernetes.io/unschedulable", effect="NoSchedule")]),
            pod("pinned-to-cordoned", node_selector={"kubernetes.io/hostname": "k8s-slave1"}),
        ], expected={"plain": {"k8s-slave2"}, "tolerates-unschedulable": SLAVES, "pinned-to-cordoned": set()})


# ---- node verbs ------------------------------------------------------------------------------------
def test_label_taint_cordon_are_idempotent_and_restored(api):
    before = nodes.node_state(api, ["k8s-slave1"])
    try:
        assert nodes.label(api, "k8s-slave1", "disktype=ssd") == "disktype=ssd"
        assert nodes.label(api, "k8s-slave1", "disktype=ssd") == "unchanged"
        assert "k8s-slave1" in nodes.nodes_matching(api, "disktype in (ssd,sas)")
        nodes.taint(api, "k8s-slave1", ["smoke=true:NoSchedule", "smoke=true:NoExecute"])
        assert nodes.taint(api, "k8s-slave1", "smoke=true:NoSchedule") == "unchanged"
        nodes.taint(api, "k8s-slave1", "smoke=false:NoSchedule")  # same key and effect: new value
        taints = {(t["key"], t.get("value"), t["effect"]) for t in nodes.get_node(api, "k8s-slave1")["spec"]["taints"]}
        assert taints == {("smoke", "false", "NoSchedule"), ("smoke", "true", "NoExecute")}
        assert "removed smoke=true:NoExecute" in nodes.untaint(api, "k8s-slave1", "smoke:NoExecute-")
        assert "removed smoke=false:NoSchedule" in nodes.untaint(api, "k8s-slave1", "smoke-")
        assert nodes.untaint(api, "k8s-slave1", "smoke-").startswith("unchanged")
        assert nodes.cordon(api, "k8s-slave1") == "cordoned"
        assert nodes.cordon(api, "k8s-slave1") == "unchanged"
        assert nodes.node_table(api).set_index("node").loc["k8s-slave1", "status"].endswith("SchedulingDisabled")
    finally:
        nodes.restore(api, before)
    assert nodes.unchanged(api, before)
    assert not nodes.get_node(api, "k8s-slave1")["spec"].get("unschedulable")


def test_dry_run_plan_changes_no_node(api):
    before = nodes.node_state(api, NODES)
    plan = Plan(target="k8s-slave1", confirm="", kind="node", log=lambda m: None)
    nodes.label(api, "k8s-slave1", "disktype=ssd", plan=plan)
    nodes.taint(api, "k8s-slave1", "smoke=true:NoSchedule", plan=plan)
    nodes.cordon(api, "k8s-slave1", plan=plan)
    assert list(plan.table()["status"]) == ["planned"] * 3
    assert nodes.node_state(api, NODES) == before


# ---- drain -------------------------------------------------------------------------------------------
@pytest.fixture
def drain_lab(api):
    """Namespace with 4 replicas of `web` (2 on k8s-slave2), restored node afterwards."""
    with scratch(api) as ns:
        workloads.apply_deployment(api, ns, workloads.deployment("web", replicas=4,
                                                                 pod_anti_affinity="preferred"))
        workloads.settle(api, ns, "web")
        yield ns


def _on(api, node, namespace):
    return sorted(p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(
        namespace, field_selector=f"spec.nodeName={node}").items if not p.metadata.deletion_timestamp)


def test_drain_reports_a_pdb_blocked_eviction_and_never_forces(api, drain_lab):
    ns = drain_lab
    drain.pod_disruption_budget(api, ns, "web", selector={"matchLabels": {"app": "web"}}, min_available=4)
    assert drain.budget_ready(api, ns, "web")["status"]["disruptionsAllowed"] == 0
    victims = _on(api, "k8s-slave2", ns)
    assert victims, "the preferred anti-affinity should have put replicas on k8s-slave2"
    result = drain.drain(api, "k8s-slave2", timeout=3, progress=False)
    assert set(result["pod"]) == set(victims)
    assert set(result["outcome"]) == {"blocked"}
    assert (result["attempts"] > 1).all()  # retried with backoff, not given up at the first 429
    assert "disruption budget" in result["detail"].iloc[0]
    assert _on(api, "k8s-slave2", ns) == victims  # nothing was deleted
    assert nodes.get_node(api, "k8s-slave2")["spec"].get("unschedulable")

    # a budget that allows one disruption at a time lets the whole drain through
    drain.pod_disruption_budget(api, ns, "web", selector={"matchLabels": {"app": "web"}}, max_unavailable=1)
    drain.budget_ready(api, ns, "web")
    result = drain.drain(api, "k8s-slave2", timeout=60, progress=False)
    assert set(result["outcome"]) == {"evicted"}
    assert _on(api, "k8s-slave2", ns) == []
    assert workloads.settle(api, ns, "web").endswith("0 unschedulable")  # recreated on the other nodes


def test_drain_dry_run_changes_nothing_and_explains_each_pod(api, drain_lab):
    ns = drain_lab
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, {**pod("bare"), "spec": {**pod("bare")["spec"],
                                                           "nodeName": "k8s-slave2"}})
    core.create_namespaced_pod(ns, {"metadata": {"name": "scratchy", "labels": {"app": "scratchy"}},
                                    "spec": {"nodeName": "k8s-slave2", "terminationGracePeriodSeconds": 0,
                                             "containers": [{"name": "c", "image": "nginx:1.27"}],
                                             "volumes": [{"name": "tmp", "emptyDir": {}}]}})
    workloads.apply_daemonset(api, ns, workloads.daemonset("agent"))
    workloads.wait_daemonset(api, ns, "agent")
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

    plan = Plan(target="k8s-slave2", confirm="", kind="node", log=lambda m: None)
    with pytest.raises(drain.DrainRefused):  # refused before anything changes, dry run or not
        drain.drain(api, "k8s-slave2", plan=plan)
    forced = drain.drain_preview(api, "k8s-slave2", force=True, delete_emptydir_data=True,
                                 ignore_daemonsets=False).set_index("pod")
    assert forced.loc["bare", "action"] == "evict"
    assert "emptyDir tmp data is lost" in forced.loc["scratchy", "why"]
    assert forced.loc[agent[0], "action"] == "refuse"

    core.delete_namespaced_pod("bare", ns)
    core.delete_namespaced_pod("scratchy", ns)
    wait_for(api, "pods", lambda ps: "bare" not in ps and "scratchy" not in ps, namespace=ns, timeout=60,
             what="bare pods gone")
    result = drain.drain(api, "k8s-slave2", plan=plan, progress=False)
    assert list(plan.table()["status"]) == ["planned", "planned"]
    assert set(result.loc[result["namespace"] == ns, "action"]) == {"evict", "skip"}  # the dry run's answer
    assert not nodes.get_node(api, "k8s-slave2")["spec"].get("unschedulable")
    assert _on(api, "k8s-slave2", ns) == sorted(set(before) - {"bare", "scratchy"})


# ---- why-pending on live objects, node board ---------------------------------------------------------
def test_why_pending_side_by_side_agrees_with_the_scheduler(api):
    with scratch(api) as ns:
        workloads.apply_deployment(api, ns, workloads.deployment("greedy", replicas=2, requests={"cpu": "3"}))
        workloads.settle(api, ns, "greedy")
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


def test_node_board_widget_follows_changes_by_watch(api):
    from widgets.node_board import NodeBoard
    rendered = threading.Event()
    board = NodeBoard(api, on_render=lambda b: rendered.set() if b.table is not None and
                      "board=yes" in b.table.set_index("node").loc["k8s-slave1", "labels"] else None)
    before = nodes.node_state(api, ["k8s-slave1"])
    board.start()
    try:
        nodes.label(api, "k8s-slave1", "board=yes")
        assert rendered.wait(30), "the board never showed the new label"
        row = board.table.set_index("node").loc["k8s-slave1"]
        assert row["pods"].endswith("/ 110") and "/ 2 (" in row["cpu requested"]
    finally:
        board.stop()
        nodes.restore(api, before)
    assert nodes.unchanged(api, before)


def test_course_demo_runbook_dry_run_changes_nothing(lab, api, tmp_path):
    from kubebook import runner
    book = runner.find("scheduling/course-demo")
    before = nodes.node_state(api, NODES)
    values = {k: v for k, v in runner.lab_values(book, lab).items() if k != "confirm"}
    result = runner.run(book, values, output_dir=tmp_path, progress=False)
    text = result.notebook.read_text()
    assert "DRY RUN for namespace luffy" in text and "would taint node k8s-master" in text
    assert nodes.node_state(api, NODES) == before
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(api).read_namespace("luffy")
    assert info.value.status == 404
