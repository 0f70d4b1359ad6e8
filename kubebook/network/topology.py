"""The course's network demos as lists of netns items (see :mod:`.netns`): pure, nothing is touched.

Two "nodes" (namespaces ``node1``, ``node2``) share one L2 segment: a veth pair named ``eth0`` at
both ends, addresses 198.18.0.1/24 and 198.18.0.2/24 (the course's 172.16.1.227/.228).

- :func:`underlay` — the two nodes and their wire;
- :func:`p2p_vxlan` / :func:`p2p_routes` — the ``vxlan20`` point-to-point demo;
- :func:`flannel` — what the CNI plugins and flanneld make: per node a ``cni0`` bridge holding the
  node's podCIDR gateway, one "pod" namespace plugged into it by a veth, and, for the other nodes'
  podCIDRs, either a ``flannel.1`` VTEP with routes, ARP and fdb entries (vxlan) or plain routes
  via the other node's underlay address (host-gw).
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

import pandas as pd

from ..plan import Plan
from .netns import Address, Fdb, Item, Link, Neighbour, NetLab, NetLabError, Route, Sysctl, check_network

UNDERLAY_NET = ipaddress.ip_network("198.18.0.0/24")
P2P_OVERLAY = ("198.19.1.3/24", "198.19.2.5/24")   # the course's 10.245.1.3/24 and 10.245.2.5/24
UNDERLAY_DEV = "eth0"
VXLAN_MTU_OVERHEAD = 50   # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
FLANNEL_VNI = 1
FLANNEL_PORT = 8472       # flannel's default: the Linux kernel's historic VXLAN port, not IANA's 4789
BACKENDS = ("vxlan", "host-gw")


@dataclass(frozen=True)
class LabNode:
    """One simulated node: its namespace, underlay address, podCIDR and pod."""
    index: int
    ns: str
    underlay: str
    pod_cidr: str
    pod_ns: str
    stands_for: str = ""      # the cluster node whose podCIDR it took ("" when podCIDRs were given)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(self.pod_cidr)

    @property
    def gateway(self) -> str:
        """cni0's address: the bridge plugin takes the first host of the subnet."""
        return str(self.network.network_address + 1)

    @property
    def pod_ip(self) -> str:
        """The first address host-local hands out (after the gateway)."""
        return str(self.network.network_address + 2)

    @property
    def vtep_ip(self) -> str:
        """flannel.1's address: the subnet's network address, as flanneld sets it (10.244.1.0/32)."""
        return str(self.network.network_address)

    @property
    def vtep_mac(self) -> str:
        """A stable locally administered MAC (flanneld picks one and publishes it in a node annotation)."""
        digest = hashlib.sha256(f"{self.ns}/flannel.1".encode()).digest()
        return "0a:" + ":".join(f"{b:02x}" for b in digest[:5])


def simulated_nodes(lab: NetLab, target, nodes: list[str], pod_cidrs: list[str] = ()) -> list[LabNode]:
    """The lab's nodes: with the given ``pod_cidrs``, or with the podCIDRs of the cluster's ``nodes``
    (read through ``target``, a :class:`kubebook.connect.Target`)."""
    if pod_cidrs:
        return lab_nodes(lab, list(pod_cidrs))
    from .podcidr import node_pod_cidrs
    return lab_nodes(lab, node_pod_cidrs(target.api, list(nodes)), names=list(nodes))


def lab_nodes(lab: NetLab, pod_cidrs: list[str], *, names: list[str] = ()) -> list[LabNode]:
    """One :class:`LabNode` per podCIDR (2 or more, /16 to /28, disjoint, inside 10.244.0.0/16)."""
    if len(pod_cidrs) < 2:
        raise NetLabError("the lab needs at least two nodes' podCIDRs")
    if len(pod_cidrs) > 20:
        raise NetLabError("at most 20 nodes in the netns lab")
    nets = [check_network(c) for c in pod_cidrs]
    for i, a in enumerate(nets):
        if not 16 <= a.prefixlen <= 28:
            raise NetLabError(f"podCIDR {a}: prefix length must be /16 to /28")
        for b in nets[i + 1:]:
            if a.overlaps(b):
                raise NetLabError(f"podCIDRs {a} and {b} overlap: two nodes would hand out the same Pod IPs")
    hosts = list(UNDERLAY_NET.hosts())
    names = list(names) + [""] * len(nets)
    return [LabNode(i + 1, lab.ns(f"node{i + 1}"), str(hosts[i]), str(n), lab.ns(f"pod{i + 1}"), names[i])
            for i, n in enumerate(nets)]


def underlay(lab: NetLab, nodes: list[LabNode]) -> list[Item]:
    """The nodes' wire: with two nodes a veth pair; with more, a bridge in a ``switch`` namespace."""
    items: list[Item] = []
    plen = UNDERLAY_NET.prefixlen
    if len(nodes) == 2:
        a, b = nodes
        items.append(Link(a.ns, UNDERLAY_DEV, "veth", peer=UNDERLAY_DEV, peer_ns=b.ns))
    else:
        switch = lab.ns("switch")
        items.append(Link(switch, "sw0", "bridge"))
        for n in nodes:
            items.append(Link(switch, f"port{n.index}", "veth", peer=UNDERLAY_DEV, peer_ns=n.ns, master="sw0"))
    for n in nodes:
        items.append(Address(n.ns, UNDERLAY_DEV, f"{n.underlay}/{plen}"))
    return items


def p2p_vxlan(nodes: list[LabNode], *, vni: int = 20, port: int = 4789, name: str = "vxlan20") -> list[Item]:
    """The course's demo: a vxlan device per node pointing at the other, and an overlay address."""
    a, b = nodes[:2]
    return [Link(a.ns, name, "vxlan", vni=vni, port=port, remote=b.underlay, dev=UNDERLAY_DEV),
            Address(a.ns, name, P2P_OVERLAY[0]),
            Link(b.ns, name, "vxlan", vni=vni, port=port, remote=a.underlay, dev=UNDERLAY_DEV),
            Address(b.ns, name, P2P_OVERLAY[1])]


def p2p_probes(nodes: list[LabNode], *, underlay: bool = True) -> list[tuple[str, str]]:
    """What the demo pings from node1: node2's underlay address (``underlay``), and its overlay address."""
    a, b = nodes[:2]
    overlay = str(ipaddress.ip_interface(P2P_OVERLAY[1]).ip)
    return ([(a.ns, b.underlay)] if underlay else []) + [(a.ns, overlay)]


def p2p_routes(nodes: list[LabNode], *, name: str = "vxlan20") -> list[Item]:
    """Each side's route to the other side's overlay subnet through the tunnel."""
    a, b = nodes[:2]
    other = [str(ipaddress.ip_interface(c).network) for c in P2P_OVERLAY]
    return [Route(a.ns, other[1], name), Route(b.ns, other[0], name)]


def flannel(nodes: list[LabNode], backend: str = "vxlan", *, mtu: int = 1500) -> list[Item]:
    """The Pod network of every node, as the bridge/host-local plugins and flanneld would build it."""
    if backend not in BACKENDS:
        raise NetLabError(f"backend {backend!r}: one of {', '.join(BACKENDS)}")
    pod_mtu = mtu - VXLAN_MTU_OVERHEAD if backend == "vxlan" else mtu  # FLANNEL_MTU in subnet.env
    items: list[Item] = []
    for n in nodes:
        # node side: forwarding on, cni0 with the subnet's gateway (bridge plugin, isGateway)
        items += [Sysctl(n.ns, "net.ipv4.ip_forward", "1"),
                  Link(n.ns, "cni0", "bridge", mtu=pod_mtu),
                  Address(n.ns, "cni0", f"{n.gateway}/{n.network.prefixlen}"),
                  # the Pod's eth0 and its host end in cni0 (bridge plugin), its address (host-local)
                  Link(n.ns, f"veth{n.index}", "veth", peer="eth0", peer_ns=n.pod_ns, master="cni0", mtu=pod_mtu),
                  Address(n.pod_ns, "eth0", f"{n.pod_ip}/{n.network.prefixlen}"),
                  Route(n.pod_ns, "default", "eth0", via=n.gateway)]
        if backend == "vxlan":
            items += [Link(n.ns, "flannel.1", "vxlan", vni=FLANNEL_VNI, port=FLANNEL_PORT, local=n.underlay,
                           dev=UNDERLAY_DEV, learning=False, mac=n.vtep_mac, mtu=mtu - VXLAN_MTU_OVERHEAD),
                      Address(n.ns, "flannel.1", f"{n.vtep_ip}/32")]
        for other in nodes:
            if other is n:
                continue
            if backend == "vxlan":
                # what flanneld programs per remote node: route, ARP entry and fdb entry
                items += [Route(n.ns, other.pod_cidr, "flannel.1", via=other.vtep_ip, onlink=True),
                          Neighbour(n.ns, "flannel.1", other.vtep_ip, other.vtep_mac),
                          Fdb(n.ns, "flannel.1", other.vtep_mac, other.underlay)]
            else:
                items.append(Route(n.ns, other.pod_cidr, UNDERLAY_DEV, via=other.underlay))
    return items


def pod_pairs(nodes: list[LabNode]) -> list[tuple[str, str]]:
    """(pod namespace, other node's pod IP) for every ordered pair of nodes."""
    return [(a.pod_ns, b.pod_ip) for a in nodes for b in nodes if a is not b]


def node_table(nodes: list[LabNode]) -> pd.DataFrame:
    """The simulated nodes: which cluster node each stands for, its addresses and its pod."""
    return pd.DataFrame([{"stands for": n.stands_for, "namespace": n.ns, "underlay (eth0)": n.underlay,
                          "podCIDR": n.pod_cidr, "cni0": n.gateway, "flannel.1": n.vtep_ip,
                          "flannel.1 MAC": n.vtep_mac, "pod namespace": n.pod_ns, "pod IP": n.pod_ip}
                         for n in nodes])


def remove_p2p(plan: Plan, lab: NetLab, nodes: list[LabNode], *, name: str = "vxlan20") -> list:
    """The course's clean-up of the point-to-point demo (``ip link del vxlan20`` on both nodes)."""
    return lab.remove_links(plan, [n.ns for n in nodes[:2]], [name])


def subnet_envs(nodes: list[LabNode], network: str = "10.244.0.0/16", backend: str = "vxlan") -> pd.DataFrame:
    """``/run/flannel/subnet.env`` of every simulated node, one row each (what flanneld would write)."""
    from .flannel import subnet_env
    return pd.DataFrame([{"node": n.ns, **subnet_env(network, n.pod_cidr, backend)} for n in nodes])


# A podCIDR no node uses, so the test routes of :func:`adjacency` collide with nothing
SPARE_CIDR = "10.244.250.0/24"
FAR_GATEWAY = "198.19.200.2"   # in the lab's range, but on no segment node1 is connected to


def adjacency(plan: Plan, lab: NetLab, nodes: list[LabNode]) -> pd.DataFrame:
    """Why host-gw needs L2 adjacency: node1's kernel asked for a route via a gateway in another
    segment, then via node2 on its own segment (each added and removed again)."""
    first = nodes[0]
    asked = [("gateway in another segment", Route(first.ns, SPARE_CIDR, UNDERLAY_DEV, via=FAR_GATEWAY)),
             ("gateway on the segment", Route(first.ns, SPARE_CIDR, UNDERLAY_DEV, via=nodes[1].underlay))]
    rows = [{"route": f"{r.dst} via {r.via} dev {r.dev}", "gateway": label,
             "kernel says": lab.try_route(plan, r) or "(dry run: not asked)"} for label, r in asked]
    return pd.DataFrame(rows, columns=["route", "gateway", "kernel says"])
