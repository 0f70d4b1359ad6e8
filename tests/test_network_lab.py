"""The netns lab for real (root only): overlay pings, backends, idempotence, teardown; podCIDRs on the lab."""
from __future__ import annotations

import os
import subprocess

import pytest

from kubebook import lab as labs
from kubebook.network import flannel, netns, podcidr, topology
from kubebook.plan import Plan
from kubebook.scheduling import workloads

pytestmark = pytest.mark.lab
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CAP_NET_ADMIN)")
CIDRS = ["10.244.1.0/24", "10.244.2.0/24"]


@pytest.fixture
def netlab(tmp_path):
    """An empty lab with a name of its own, deleted afterwards whatever the test did."""
    with netns.temporary(f"t{os.getpid() % 100000}", root=tmp_path) as lab:
        yield lab


def _ip_netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def _build(lab, backend):
    nodes = topology.lab_nodes(lab, CIDRS)
    lab.apply(topology.underlay(lab, nodes) + topology.flannel(nodes, backend))
    return nodes


@needs_root
def test_p2p_tunnel_needs_its_routes(netlab):
    nodes = topology.lab_nodes(netlab, CIDRS)
    netlab.apply(topology.underlay(netlab, nodes) + topology.p2p_vxlan(nodes))
    before = netns.ping(nodes[0].ns, "198.19.2.5", count=1)
    assert before["received"] == 0 and before["error"] == "Network is unreachable"
    netlab.apply(topology.p2p_routes(nodes))
    assert netns.ping(nodes[0].ns, "198.19.2.5", count=2)["received"] == 2
    vx = netlab.links().query("device == 'vxlan20'")
    assert list(vx["detail"]) == ["VNI 20 local - remote 198.18.0.2 dstport 4789",
                                  "VNI 20 local - remote 198.18.0.1 dstport 4789"]


@needs_root
def test_vxlan_pod_to_pod_across_nodes(netlab):
    a, b = _build(netlab, "vxlan")
    for src, dst in topology.pod_pairs([a, b]):
        result = netns.ping(src, dst, count=2)
        assert result["received"] == 2, result
    routes = netlab.routes()
    row = routes[(routes["namespace"] == a.ns) & (routes["destination"] == "10.244.2.0/24")].iloc[0]
    assert (row["gateway"], row["device"], row["flags"]) == ("10.244.2.0", "flannel.1", "onlink")
    fdb = netlab.fdb()
    assert set(zip(fdb["namespace"], fdb["mac"], fdb["dst"])) == {(a.ns, b.vtep_mac, b.underlay),
                                                                   (b.ns, a.vtep_mac, a.underlay)}
    neigh = netlab.neighbours()
    assert set(zip(neigh["namespace"], neigh["address"], neigh["mac"])) == {(a.ns, b.vtep_ip, b.vtep_mac),
                                                                            (b.ns, a.vtep_ip, a.vtep_mac)}


@needs_root
def test_host_gw_routes_and_path_mtu_of_both_backends(netlab):
    a, b = _build(netlab, "vxlan")
    assert netns.largest_payload(a.pod_ns, b.pod_ip) == 1450 - 28
    netlab.reset()
    a, b = _build(netlab, "host-gw")
    assert "flannel.1" not in set(netlab.links()["device"])
    assert netns.ping(a.pod_ns, b.pod_ip, count=2)["received"] == 2
    assert netns.largest_payload(a.pod_ns, b.pod_ip) == 1500 - 28
    assert netlab.try_route(netns.Route(a.ns, "10.244.250.0/24", "eth0", via="198.19.200.2")).startswith("refused")
    assert netlab.try_route(netns.Route(a.ns, "10.244.250.0/24", "eth0", via=b.underlay)) == "accepted"


@needs_root
def test_apply_twice_and_teardown_leave_nothing(tmp_path):
    lab = netns.NetLab(f"u{os.getpid() % 100000}", root=tmp_path)
    try:
        nodes = _build(lab, "vxlan")
        links_before = len(lab.links())
        _build(lab, "vxlan")                      # re-running changes nothing that exists
        assert len(lab.links()) == links_before
        assert netns.ping(nodes[0].pod_ns, nodes[1].pod_ip, count=1)["received"] == 1
        assert sorted(lab.recorded()) == sorted(n for x in nodes for n in (x.ns, x.pod_ns))
    finally:
        result = lab.teardown()
    assert result.startswith("deleted")
    assert lab.existing() == [] and lab.recorded() == []
    assert lab.prefix not in _ip_netns()
    assert lab.teardown() == "nothing to delete"


@needs_root
def test_a_namespace_the_lab_did_not_create_is_left_alone(netlab):
    from pyroute2 import netns as pr_netns
    stranger = netlab.ns("node1")
    pr_netns.create(stranger)
    try:
        with pytest.raises(netns.NetLabError, match="did not create it"):
            _build(netlab, "vxlan")
        netlab.teardown()
        assert stranger in _ip_netns()
    finally:
        pr_netns.remove(stranger)


def test_dry_run_touches_nothing(tmp_path):
    lab = netns.NetLab(f"d{os.getpid() % 100000}", root=tmp_path)
    plan = Plan(target=lab.name, confirm="", kind="network lab", log=lambda m: None)
    nodes = topology.lab_nodes(lab, CIDRS)
    lab.apply(topology.underlay(lab, nodes) + topology.flannel(nodes, "vxlan"), plan=plan)
    assert set(plan.table()["status"]) == {"planned"}
    assert lab.recorded() == [] and lab.existing() == []


def test_pod_ips_lie_in_their_nodes_podcidr(api):
    plan = Plan(target="net-test", confirm="net-test", kind="namespace", log=lambda m: None)
    workloads.ensure_namespace(api, "net-test", plan=plan)
    try:
        workloads.apply_deployment(api, "net-test", workloads.deployment("web", replicas=4), plan=plan)
        workloads.settle(api, "net-test", "web")
        podcidr.wait_pod_ips(api, "net-test", "app=web")
        ips = podcidr.pod_ips(api, namespace="net-test")
        with_ip = ips[ips["podIP"] != ""]
        assert len(with_ip) >= 1
        assert with_ip["in node podCIDR"].all(), with_ip
        assert podcidr.duplicate_ips(ips).empty
    finally:
        workloads.delete_namespace(api, "net-test")


def test_cluster_cidr_inferred_on_the_lab(api):
    sources = podcidr.cluster_cidr_sources(api).set_index("source")["cluster CIDR"]
    inferred = sources["inferred from every node's spec.podCIDRs"]
    import ipaddress
    assert ipaddress.ip_network(inferred).subnet_of(ipaddress.ip_network(labs.CLUSTER_CIDR))
    assert podcidr.cluster_cidr(api, labs.CLUSTER_CIDR) == labs.CLUSTER_CIDR
    with pytest.raises(Exception, match="does not contain"):
        podcidr.cluster_cidr(api, "10.96.0.0/12")


def test_no_flannel_on_the_lab_so_the_switch_does_nothing(api, tmp_path):
    assert flannel.find_configmap(api) is None
    plan = Plan(target=flannel.CONFIGMAP, confirm=flannel.CONFIGMAP, kind="ConfigMap", log=lambda m: None)
    table = flannel.switch_backend(api, "host-gw", plan=plan, backup_dir=tmp_path)
    assert list(table["value"]) == ["(no ConfigMap)"]
    assert "done" not in set(plan.table()["status"])
    assert not any(tmp_path.iterdir())
