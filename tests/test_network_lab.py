"""The netns lab for real (root only): overlay pings, backends, idempotence, ownership, teardown; podCIDRs
on the lab; flannel's backend switch on a stand-in flannel (ConfigMap + DaemonSet run by kwok), put back
at clean-up, and its wait saying why within its timeout when the DaemonSet runs nowhere."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from kubernetes import client

from kubebook import lab as labs
from kubebook.network import flannel, netns, podcidr, topology
from kubebook.plan import Plan, StepFailed
from kubebook.scheduling import workloads
from kubebook.waits import WaitBlocked

pytestmark = pytest.mark.lab
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CAP_NET_ADMIN)")
CIDRS = ["10.244.1.0/24", "10.244.2.0/24"]


@pytest.fixture
def netlab(tmp_path):
    """An empty lab with a name of its own and a confirmed plan, deleted afterwards whatever the test did."""
    with netns.temporary(f"t{os.getpid() % 100000}", root=tmp_path) as lab_and_plan:
        yield lab_and_plan


def _ip_netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def _build(lab, plan, backend):
    nodes = topology.lab_nodes(lab, CIDRS)
    lab.apply(plan, topology.underlay(lab, nodes) + topology.flannel(nodes, backend))
    return nodes


@needs_root
def test_p2p_tunnel_needs_its_routes(netlab):
    lab, plan = netlab
    nodes = topology.lab_nodes(lab, CIDRS)
    lab.apply(plan, topology.underlay(lab, nodes) + topology.p2p_vxlan(nodes))
    before = netns.ping(nodes[0].ns, "198.19.2.5", count=1)
    assert before["received"] == 0 and before["error"] == "Network is unreachable"
    lab.apply(plan, topology.p2p_routes(nodes))
    assert netns.ping(nodes[0].ns, "198.19.2.5", count=2)["received"] == 2
    vx = lab.links().query("device == 'vxlan20'")
    assert list(vx["detail"]) == ["VNI 20 local - remote 198.18.0.2 dstport 4789",
                                  "VNI 20 local - remote 198.18.0.1 dstport 4789"]
    topology.remove_p2p(plan, lab, nodes)
    assert "vxlan20" not in set(lab.links()["device"])


@needs_root
def test_vxlan_pod_to_pod_across_nodes(netlab):
    lab, plan = netlab
    a, b = _build(lab, plan, "vxlan")
    for src, dst in topology.pod_pairs([a, b]):
        result = netns.ping(src, dst, count=2)
        assert result["received"] == 2, result
    routes = lab.routes()
    row = routes[(routes["namespace"] == a.ns) & (routes["destination"] == "10.244.2.0/24")].iloc[0]
    assert (row["gateway"], row["device"], row["flags"]) == ("10.244.2.0", "flannel.1", "onlink")
    fdb = lab.fdb()
    assert set(zip(fdb["namespace"], fdb["mac"], fdb["dst"])) == {(a.ns, b.vtep_mac, b.underlay),
                                                                   (b.ns, a.vtep_mac, a.underlay)}
    neigh = lab.neighbours()
    assert set(zip(neigh["namespace"], neigh["address"], neigh["mac"])) == {(a.ns, b.vtep_ip, b.vtep_mac),
                                                                            (b.ns, a.vtep_ip, a.vtep_mac)}


@needs_root
def test_host_gw_routes_and_path_mtu_of_both_backends(netlab):
    lab, plan = netlab
    a, b = _build(lab, plan, "vxlan")
    assert netns.largest_payload(a.pod_ns, b.pod_ip) == 1450 - 28
    lab.rebuild(plan)
    a, b = _build(lab, plan, "host-gw")
    assert "flannel.1" not in set(lab.links()["device"])
    assert netns.ping(a.pod_ns, b.pod_ip, count=2)["received"] == 2
    assert netns.largest_payload(a.pod_ns, b.pod_ip) == 1500 - 28
    said = topology.adjacency(plan, lab, [a, b]).set_index("gateway")["kernel says"]
    assert said["gateway in another segment"].startswith("refused") and said["gateway on the segment"] == "accepted"


@needs_root
def test_apply_twice_and_clean_up_leave_nothing(tmp_path):
    lab = netns.NetLab(f"u{os.getpid() % 100000}", root=tmp_path)
    plan = Plan(target=lab.name, kind="netlab", confirm=lab.name, log=lambda m: None)
    try:
        nodes = _build(lab, plan, "vxlan")
        links_before = len(lab.links())
        _build(lab, plan, "vxlan")                      # re-running changes nothing that exists
        assert len(lab.links()) == links_before
        assert netns.ping(nodes[0].pod_ns, nodes[1].pod_ip, count=1)["received"] == 1
        assert sorted(lab.recorded()) == sorted(n for x in nodes for n in (x.ns, x.pod_ns))
        assert lab.owner() == plan.record.run
    finally:
        plan.cleanup()
    assert plan.table().set_index("step").loc[f"teardown-{lab.name}", "detail"].split(": ", 1)[1].startswith("deleted")
    assert lab.existing() == [] and lab.recorded() == []
    assert lab.prefix not in _ip_netns()
    assert lab.delete_recorded() == "nothing to delete"


@needs_root
def test_a_namespace_the_lab_did_not_create_is_left_alone(netlab):
    from pyroute2 import netns as pr_netns
    lab, plan = netlab
    stranger = lab.ns("node1")
    pr_netns.create(stranger)
    try:
        with pytest.raises(StepFailed, match="did not create it"):
            _build(lab, plan, "vxlan")
        plan.cleanup()
        assert stranger in _ip_netns()
    finally:
        pr_netns.remove(stranger)


@needs_root
def test_a_netlab_left_by_another_run_is_neither_reused_nor_deleted(tmp_path, monkeypatch):
    lab = netns.NetLab(f"o{os.getpid() % 100000}", root=tmp_path)
    monkeypatch.setenv("KUBEBOOK_RUN_ID", "test-run-that-left-it")
    first = Plan(target=lab.name, kind="netlab", confirm=lab.name, log=lambda m: None)
    try:
        _build(lab, first, "vxlan")
        first.cleanup(when=False)
        monkeypatch.setenv("KUBEBOOK_RUN_ID", "test-next-run")
        second = Plan(target=lab.name, kind="netlab", log=lambda m: None)  # a dry run is refused already
        with pytest.raises(netns.NetLabError, match="still there from run test-run-that-left-it"):
            _build(lab, second, "vxlan")
        assert len(lab.existing()) == 4
        said = subprocess.run([os.sys.executable, "-m", "kubebook.network.netns", "teardown", lab.name],
                              env={**os.environ, "KUBEBOOK_NETLAB_ROOT": str(tmp_path)}, capture_output=True,
                              text=True, check=True).stdout
        assert said.startswith("deleted ") and lab.existing() == []
    finally:
        lab.delete_recorded()


def test_dry_run_touches_nothing(tmp_path):
    lab = netns.NetLab(f"d{os.getpid() % 100000}", root=tmp_path)
    plan = Plan(target=lab.name, confirm="", kind="netlab", log=lambda m: None)
    nodes = topology.lab_nodes(lab, CIDRS)
    assert lab.apply(plan, topology.underlay(lab, nodes) + topology.flannel(nodes, "vxlan")) is None
    plan.cleanup()
    assert set(plan.table()["status"]) == {"planned"}
    assert lab.recorded() == [] and lab.existing() == []


def test_pod_ips_lie_in_their_nodes_podcidr(api, run):
    namespace = f"net-t-{uuid.uuid4().hex[:6]}"
    plan = Plan(target=namespace, confirm=namespace, kind="namespace", cluster=api, log=lambda m: None)
    workloads.ensure_namespace(plan, namespace)
    try:
        workloads.apply_deployment(plan, namespace, workloads.deployment("web", replicas=4))
        workloads.settle(plan, namespace, "web")
        assert podcidr.wait_pod_ips(plan, namespace, "app=web").endswith("4 Pods with an IP")
        ips = podcidr.pod_ips(api, namespace=namespace)
        with_ip = ips[ips["podIP"] != ""]
        assert len(with_ip) == 4
        assert with_ip["in node podCIDR"].all(), with_ip
        assert podcidr.duplicate_ips(ips).empty
    finally:
        plan.cleanup()
    assert namespace not in {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}


def test_cluster_cidr_inferred_on_the_lab(api):
    sources = podcidr.cluster_cidr_sources(api).set_index("source")["cluster CIDR"]
    inferred = sources["inferred from every node's spec.podCIDRs"]
    import ipaddress
    assert ipaddress.ip_network(inferred).subnet_of(ipaddress.ip_network(labs.CLUSTER_CIDR))
    assert podcidr.cluster_cidr(api, labs.CLUSTER_CIDR) == labs.CLUSTER_CIDR
    with pytest.raises(Exception, match="does not contain"):
        podcidr.cluster_cidr(api, "10.96.0.0/12")


def test_no_flannel_on_the_lab_so_the_switch_does_nothing(api, run):
    namespace = f"no-flannel-{uuid.uuid4().hex[:6]}"
    plan = Plan(target="netlab", kind="netlab", also=flannel.switch_scope(namespace, "host-gw"),
                confirm=f"netlab, namespace/{namespace}", cluster=api, log=lambda m: None)
    table = flannel.switch_backend(plan, "host-gw", namespace=namespace)
    assert list(table["value"]) == [f"(no ConfigMap {namespace}/kube-flannel-cfg)"]
    assert plan.table()["step"].tolist() == ["find-flannel"] and plan.objects().empty
    assert flannel.switch_scope(namespace, "none") == []


# ---------------------------------------------------------------- a stand-in flannel, run by kwok

@pytest.fixture
def stand_in_flannel(api):
    """kube-flannel's ConfigMap and DaemonSet (the upstream layout, any image: kwok runs nothing) in a
    namespace of their own, deleted afterwards."""
    namespace = f"flannel-t-{uuid.uuid4().hex[:6]}"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_config_map(namespace, flannel.configmap("10.244.0.0/16", "vxlan", namespace=namespace))

    def daemonset(node_selector=None):
        spec = {"containers": [{"name": "kube-flannel", "image": "flannel:v0.26"}],
                "tolerations": [{"operator": "Exists"}], "terminationGracePeriodSeconds": 0,
                **({"nodeSelector": node_selector} if node_selector else {})}
        apps.create_namespaced_daemon_set(namespace, {
            "metadata": {"name": flannel.DAEMONSET, "labels": {"app": "flannel"}},
            "spec": {"selector": {"matchLabels": {"app": "flannel"}},
                     "template": {"metadata": {"labels": {"app": "flannel"}}, "spec": spec}}})

    yield namespace, daemonset
    core.delete_namespace(namespace)


def _net_conf(api, namespace) -> dict:
    cm = client.CoreV1Api(api).read_namespaced_config_map(flannel.CONFIGMAP, namespace)
    return json.loads(cm.data["net-conf.json"])


def _flannel_pods(api, namespace) -> set[str]:
    return set(flannel.flannel_pods(api, namespace)["pod"])


def test_the_switch_backs_up_patches_restarts_and_is_put_back(api, run, stand_in_flannel):
    namespace, daemonset = stand_in_flannel
    daemonset()
    from kubebook.waits import wait_for
    wait_for(api, "daemonsets", lambda ds: (ds.get(flannel.DAEMONSET, {}).get("status") or {}).get("numberReady") == 3,
             namespace=namespace, timeout=60, what="stand-in flannel Ready on 3 nodes")
    first = _flannel_pods(api, namespace)
    plan = Plan(target="netlab", kind="netlab", also=flannel.switch_scope(namespace, "host-gw"),
                confirm=f"netlab, namespace/{namespace}", cluster=api, log=lambda m: None)
    table = flannel.switch_backend(plan, "host-gw", namespace=namespace, timeout=60)
    assert [json.loads(v)["Backend"]["Type"] for v in table["value"]] == ["vxlan", "host-gw"]
    assert _net_conf(api, namespace)["Backend"] == {"Type": "host-gw"}
    second = _flannel_pods(api, namespace)
    assert len(second) == 3 and not second & first
    backup = plan.record.changed[next(iter(plan.record.changed))].backup
    assert backup.stat().st_mode & 0o777 == 0o600 and "vxlan" in backup.read_text()

    plan.cleanup()
    assert _net_conf(api, namespace) == {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}
    third = _flannel_pods(api, namespace)
    assert len(third) == 3 and not third & second
    assert set(plan.table()["status"]) == {"done"}


def test_a_daemonset_that_runs_nowhere_is_reported_within_the_timeout(api, run, stand_in_flannel):
    namespace, daemonset = stand_in_flannel
    daemonset(node_selector={"kubebook.io/no-such-node": "true"})
    plan = Plan(target="netlab", kind="netlab", also=flannel.switch_scope(namespace, "host-gw"),
                confirm=f"netlab, namespace/{namespace}", cluster=api, log=lambda m: None)
    with pytest.raises(StepFailed) as failed:
        flannel.switch_backend(plan, "host-gw", namespace=namespace, timeout=10)
    assert isinstance(failed.value.cause, WaitBlocked)
    assert "runs on no node: desiredNumberScheduled is 0 of 3 node(s)" in str(failed.value.cause)
    assert "kubebook.io/no-such-node" in str(failed.value.cause)
    plan.cleanup()
    assert _net_conf(api, namespace)["Backend"] == {"Type": "vxlan"}
