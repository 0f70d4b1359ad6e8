"""Unit tests of the network package: CIDR math, flannel rendering and validation, route planning."""
from __future__ import annotations

import json
import struct

import pytest
import yaml

from kubebook.errors import KubebookError
from kubebook.network import flannel, icmp, netns, podcidr, topology

# kube-flannel-cfg as the upstream kube-flannel.yml ships it (v0.26), recorded
UPSTREAM_CONFIGMAP = yaml.safe_load("""
apiVersion: v1
kind: ConfigMap
metadata:
  name: kube-flannel-cfg
  namespace: kube-flannel
  labels: {app: flannel, k8s-app: flannel, tier: node}
data:
  cni-conf.json: |
    {
      "name": "cbr0",
      "cniVersion": "0.3.1",
      "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
      ]
    }
  net-conf.json: |
    {
      "Network": "10.244.0.0/16",
      "EnableNFTables": false,
      "Backend": {"Type": "vxlan"}
    }
""")
NODE_CIDRS = ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]


def _checks(table) -> dict[str, bool]:
    return dict(zip(table["check"], table["ok"]))


# ---------------------------------------------------------------- CIDR math
@pytest.mark.parametrize("cidrs, expected", [
    (NODE_CIDRS, "10.244.0.0/22"),
    (["10.244.1.0/24"], "10.244.1.0/24"),
    (["10.244.0.0/24", "10.244.255.0/24"], "10.244.0.0/16"),
    (["10.244.3.0/24", "10.244.4.0/24"], "10.244.0.0/21"),
])
def test_covering_network_is_the_smallest_holding_every_podcidr(cidrs, expected):
    assert str(podcidr.covering_network(cidrs)) == expected


def test_covering_network_of_nothing_is_none():
    assert podcidr.covering_network([]) is None
    assert podcidr.covering_network(["fd00::/64"]) is None


def test_bad_cidr_is_one_clear_error():
    with pytest.raises(KubebookError, match="not a CIDR"):
        podcidr.covering_network(["10.244.1.0/33"])


@pytest.mark.parametrize("ip, role", [
    ("10.244.1.0", "network address (flannel.1's VTEP address)"), ("10.244.1.1", "cni0 gateway"),
    ("10.244.1.2", ""), ("10.244.1.255", "broadcast")])
def test_addresses_a_cni_node_never_gives_a_pod(ip, role):
    import ipaddress
    assert podcidr.reserved_role(ip, [ipaddress.ip_network("10.244.1.0/24")]) == role


def test_flag_read_from_a_command_line():
    assert podcidr._flag(["kube-controller-manager", "--cluster-cidr=10.244.0.0/16"], "--cluster-cidr") == \
        "10.244.0.0/16"
    assert podcidr._flag(["kcm", "--cluster-cidr", "10.0.0.0/8"], "--cluster-cidr") == "10.0.0.0/8"
    assert podcidr._flag(["kcm", "--cluster-name=x"], "--cluster-cidr") == ""


# ---------------------------------------------------------------- flannel rendering
def test_subnet_env_from_the_node_podcidr():
    env = flannel.subnet_env("10.244.0.0/16", "10.244.1.0/24", "vxlan")
    assert env == {"FLANNEL_NETWORK": "10.244.0.0/16", "FLANNEL_SUBNET": "10.244.1.1/24",
                   "FLANNEL_MTU": "1450", "FLANNEL_IPMASQ": "true"}
    assert flannel.subnet_env("10.244.0.0/16", "10.244.1.0/24", "host-gw")["FLANNEL_MTU"] == "1500"
    assert flannel.subnet_env_text(env).splitlines()[1] == "FLANNEL_SUBNET=10.244.1.1/24"


def test_subnet_env_refuses_a_podcidr_outside_the_network():
    with pytest.raises(KubebookError, match="outside Network"):
        flannel.subnet_env("10.244.0.0/16", "10.245.1.0/24")


def test_rendered_configmap_matches_upstream():
    rendered = flannel.configmap("10.244.0.0/16", "vxlan")
    upstream = UPSTREAM_CONFIGMAP["data"]
    assert json.loads(rendered["data"]["cni-conf.json"]) == json.loads(upstream["cni-conf.json"])
    expected = json.loads(upstream["net-conf.json"])
    assert json.loads(rendered["data"]["net-conf.json"]) == {"Network": expected["Network"],
                                                             "Backend": expected["Backend"]}
    assert flannel.net_conf("10.244.0.0/16", "host-gw") == {"Network": "10.244.0.0/16",
                                                            "Backend": {"Type": "host-gw"}}


def test_unknown_backend_is_refused():
    with pytest.raises(KubebookError, match="backend 'geneve'"):
        flannel.net_conf("10.244.0.0/16", "geneve")


def test_bridge_delegate_is_what_the_flannel_plugin_passes():
    env = flannel.subnet_env("10.244.0.0/16", "10.244.2.0/24", "vxlan")
    d = flannel.bridge_delegate(env)
    assert (d["type"], d["bridge"], d["mtu"], d["isGateway"], d["ipMasq"]) == ("bridge", "cni0", 1450, True, False)
    assert d["ipam"]["type"] == "host-local"
    assert d["ipam"]["ranges"] == [[{"subnet": "10.244.2.0/24"}]]
    assert d["ipam"]["routes"] == [{"dst": "10.244.0.0/16"}]
    assert d["hairpinMode"] and d["isDefaultGateway"]


# ---------------------------------------------------------------- flannel validation
def test_upstream_configmap_passes_every_check():
    table = flannel.validate_configmap(UPSTREAM_CONFIGMAP, cluster_cidr="10.244.0.0/16", node_cidrs=NODE_CIDRS)
    assert table["ok"].all(), table
    assert len(table) == 11


def test_network_different_from_cluster_cidr_fails():
    checks = _checks(flannel.validate_configmap(UPSTREAM_CONFIGMAP, cluster_cidr="10.96.0.0/12",
                                                node_cidrs=["10.96.1.0/24"]))
    assert checks["Network matches the cluster CIDR"] is False
    assert checks["every node's podCIDR inside Network"] is False
    assert checks["Backend.Type known"] is True


def test_broken_net_conf_and_conflist_are_reported():
    cm = {"metadata": {"name": "kube-flannel-cfg", "namespace": "kube-system"},
          "data": {"cni-conf.json": json.dumps({"name": "cbr0", "cniVersion": "0.3.1",
                                                "plugins": [{"type": "portmap"}, {"type": "flannel"}]}),
                   "net-conf.json": '{"Network": "10.244.0.0/16", "Backend": {}'}}
    checks = _checks(flannel.validate_configmap(cm))
    assert checks["flannel is the first plugin"] is False
    assert checks["net-conf.json parses"] is False
    assert "Network is a CIDR" not in checks


def test_missing_backend_type_and_bad_vni():
    rows = {r["check"]: r for r in flannel.validate_net_conf({"Network": "10.244.0.0/16"})}
    assert rows["Backend.Type known"]["ok"] is False
    rows = {r["check"]: r for r in flannel.validate_net_conf(
        {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 2 ** 24}})}
    assert rows["vxlan VNI and Port"]["ok"] is False


def test_no_configmap_is_one_failed_check():
    table = flannel.validate_configmap(None)
    assert list(table["ok"]) == [False]


def test_configmap_file_must_hold_a_configmap(tmp_path):
    good = tmp_path / "cm.yaml"
    good.write_text(yaml.safe_dump(UPSTREAM_CONFIGMAP))
    assert flannel.load_configmap_file(good)["metadata"]["name"] == "kube-flannel-cfg"
    bad = tmp_path / "pod.yaml"
    bad.write_text("kind: Pod\n")
    with pytest.raises(KubebookError, match="does not hold a ConfigMap"):
        flannel.load_configmap_file(bad)


# ---------------------------------------------------------------- netns safety and route planning
@pytest.mark.parametrize("address", ["198.18.0.1/24", "198.19.255.1/24", "10.244.3.7/24", "10.244.1.0"])
def test_lab_addresses_accepted(address):
    netns.check_address(address)


@pytest.mark.parametrize("address", ["192.168.1.10/24", "8.8.8.8", "127.0.0.1", "10.245.1.3/24", "172.16.1.227"])
def test_addresses_outside_the_lab_ranges_refused(address):
    with pytest.raises(netns.NetLabError, match="outside the lab's ranges|not an address"):
        netns.check_address(address)


def test_items_outside_the_labs_namespaces_refused():
    lab = netns.NetLab("unit")
    with pytest.raises(netns.NetLabError, match="only configures namespaces named kb-unit-"):
        netns.validate([netns.Address("kb-other-node1", "eth0", "198.18.0.1/24")], lab)
    with pytest.raises(netns.NetLabError, match="outside the lab's ranges"):
        netns.validate([netns.Route(lab.ns("node1"), "192.168.0.0/16", "eth0", via="198.18.0.2")], lab)
    with pytest.raises(netns.NetLabError, match="only per-namespace net"):
        netns.validate([netns.Sysctl(lab.ns("node1"), "kernel.panic", "1")], lab)


@pytest.mark.parametrize("name", ["", "Net", "-lab", "lab-", "a" * 41, "a_b", "a/b"])
def test_bad_lab_names_refused(name):
    with pytest.raises(netns.NetLabError, match="netlab name"):
        netns.NetLab(name)


def test_a_lab_claims_its_own_namespaces_only():
    short, longer = netns.NetLab("a"), netns.NetLab("a-b")
    assert short.owns_name("kb-a-node1") and short.owns_name("kb-a-switch")
    assert not short.owns_name("kb-a-b-node1") and longer.owns_name("kb-a-b-node1")
    assert not short.owns_name("kb-a-") and not short.owns_name("kb-ab-node1")


def test_a_netlab_another_run_left_is_refused_before_any_change(tmp_path):
    lab = netns.NetLab("unit", root=tmp_path)
    lab._record(["kb-unit-node1"], "run-that-left-it")
    with pytest.raises(netns.NetLabError, match="still there from run run-that-left-it.*netns teardown unit"):
        lab.check_owner("this-run")
    lab.check_owner("run-that-left-it")


def test_lab_nodes_from_podcidrs():
    lab = netns.NetLab("unit")
    nodes = topology.lab_nodes(lab, ["10.244.1.0/24", "10.244.2.0/24"])
    a, b = nodes
    assert (a.ns, a.pod_ns, a.underlay, a.gateway, a.pod_ip, a.vtep_ip) == \
        ("kb-unit-node1", "kb-unit-pod1", "198.18.0.1", "10.244.1.1", "10.244.1.2", "10.244.1.0")
    assert b.underlay == "198.18.0.2"
    assert a.vtep_mac != b.vtep_mac and int(a.vtep_mac.split(":")[0], 16) & 0b10  # locally administered


@pytest.mark.parametrize("cidrs, message", [
    (["10.244.1.0/24"], "at least two"),
    (["10.244.1.0/24", "10.244.1.128/25"], "overlap"),
    (["10.244.1.0/24", "10.96.0.0/24"], "outside the lab's ranges"),
    (["10.244.1.0/24", "10.244.2.0/30"], "/16 to /28"),
])
def test_lab_nodes_refuse_bad_podcidrs(cidrs, message):
    with pytest.raises(netns.NetLabError, match=message):
        topology.lab_nodes(netns.NetLab("unit"), cidrs)


def _nodes():
    return topology.lab_nodes(netns.NetLab("unit"), ["10.244.1.0/24", "10.244.2.0/24"])


def test_vxlan_plan_is_what_flanneld_programs():
    a, b = _nodes()
    items = topology.flannel([a, b], "vxlan")
    assert netns.Route(a.ns, "10.244.2.0/24", "flannel.1", via="10.244.2.0", onlink=True) in items
    assert netns.Neighbour(a.ns, "flannel.1", "10.244.2.0", b.vtep_mac) in items
    assert netns.Fdb(a.ns, "flannel.1", b.vtep_mac, "198.18.0.2") in items
    vtep = next(i for i in items if isinstance(i, netns.Link) and i.ns == a.ns and i.name == "flannel.1")
    assert (vtep.vni, vtep.port, vtep.learning, vtep.local, vtep.mtu) == (1, 8472, False, "198.18.0.1", 1450)
    pod_veth = next(i for i in items if isinstance(i, netns.Link) and i.peer_ns == a.pod_ns)
    assert (pod_veth.master, pod_veth.mtu, pod_veth.peer) == ("cni0", 1450, "eth0")
    assert netns.Route(a.pod_ns, "default", "eth0", via="10.244.1.1") in items


def test_host_gw_plan_routes_via_the_other_nodes_underlay_address():
    a, b = _nodes()
    items = topology.flannel([a, b], "host-gw")
    assert netns.Route(a.ns, "10.244.2.0/24", "eth0", via="198.18.0.2") in items
    assert netns.Route(b.ns, "10.244.1.0/24", "eth0", via="198.18.0.1") in items
    assert not any(isinstance(i, (netns.Fdb, netns.Neighbour)) or getattr(i, "kind", "") == "vxlan" for i in items)
    assert {i.mtu for i in items if isinstance(i, netns.Link)} == {1500}   # cni0 and the Pods: no overhead


def test_three_nodes_share_a_switch_and_get_routes_to_both_others():
    lab = netns.NetLab("unit")
    nodes = topology.lab_nodes(lab, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"])
    wire = topology.underlay(lab, nodes)
    assert netns.Link("kb-unit-switch", "sw0", "bridge") in wire
    routes = [i for i in topology.flannel(nodes, "vxlan") if isinstance(i, netns.Route) and i.ns == nodes[0].ns]
    assert {r.dst for r in routes} == {"10.244.1.0/24", "10.244.2.0/24"}


def test_p2p_demo_items_and_commands():
    a, b = _nodes()
    items = topology.p2p_vxlan([a, b], vni=20, port=4789)
    table = netns.plan_table(items + topology.p2p_routes([a, b]))
    commands = list(table["command"])
    assert "ip -n kb-unit-node1 link add vxlan20 type vxlan id 20 remote 198.18.0.2 dstport 4789 dev eth0" \
        in commands[0]
    assert "ip -n kb-unit-node1 route replace 198.19.2.0/24 dev vxlan20" in commands
    assert "ip -n kb-unit-node2 addr add 198.19.2.5/24 dev vxlan20" in commands


def test_onlink_route_fdb_and_neighbour_commands():
    assert netns.Route("kb-u-node1", "10.244.2.0/24", "flannel.1", via="10.244.2.0", onlink=True).command() == \
        "ip -n kb-u-node1 route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"
    assert netns.Fdb("kb-u-node1", "flannel.1", "0a:00:00:00:00:02", "198.18.0.2").command() == \
        "bridge -n kb-u-node1 fdb append 0a:00:00:00:00:02 dev flannel.1 dst 198.18.0.2 self permanent"
    assert netns.Neighbour("kb-u-node1", "flannel.1", "10.244.2.0", "0a:00:00:00:00:02").command().endswith(
        "nud permanent")


def test_ping_refuses_foreign_namespaces_and_addresses():
    with pytest.raises(netns.NetLabError, match="only from a kubebook lab namespace"):
        netns.ping("default", "198.18.0.2")
    with pytest.raises(netns.NetLabError, match="outside the lab's ranges"):
        netns.ping("kb-unit-node1", "1.1.1.1")


# ---------------------------------------------------------------- icmp
def test_echo_request_checksum_verifies():
    packet = icmp.echo_request(0x1234, 7, 56)
    assert len(packet) == 64
    assert icmp.checksum(packet) == 0
    kind, code, _, ident, seq = struct.unpack("!BBHHH", packet[:8])
    assert (kind, code, ident, seq) == (8, 0, 0x1234, 7)


def test_checksum_of_known_header():
    # RFC 1071's example words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2; the checksum is its complement
    assert icmp.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220d
