"""Network namespaces as lab machines: create, configure through netlink, read back, delete.

A :class:`NetLab` owns the namespaces named ``kb-<lab>-<role>`` (``kb-netlab-node1``,
``kb-netlab-pod1``...). They are the creation of one run: each is recorded in a state file (with
the run's id) before it is made, clean-up deletes exactly the recorded ones, and another run
refuses to build on them. Nothing else on the machine is touched: everything is configured inside
those namespaces, never in the root one, and every address must lie in the underlay range
198.18.0.0/15 or the Pod network 10.244.0.0/16.

What to build is a list of items (:class:`Link`, :class:`Address`, :class:`Route`,
:class:`Neighbour`, :class:`Fdb`, :class:`Sysctl`); each knows the ``ip`` command it stands for,
so a dry run shows the iproute2 equivalent of every netlink call.

    lab = NetLab("netlab")
    lab.apply(plan, items)            # steps of the plan: described in a dry run, done when confirmed
    lab.routes()                      # every namespace's routes as a table
    plan.cleanup()                    # deletes the namespaces this run created

    python -m kubebook.network.netns teardown netlab   # remove a lab a run left behind
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from functools import partial
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from .. import paths
from ..errors import KubebookError
from ..plan import Plan

PREFIX = "kb-"
UNDERLAY_RANGE = ipaddress.ip_network("198.18.0.0/15")   # RFC 2544 benchmarking range: never routed
POD_RANGE = ipaddress.ip_network("10.244.0.0/16")        # the course's cluster CIDR
ALLOWED = (UNDERLAY_RANGE, POD_RANGE)
NUD_PERMANENT = 0x80
RTNH_F_ONLINK = 4
NTF_SELF = 0x02
_LAB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")   # a DNS-1123 label, short enough for file names
_ROLE = re.compile(r"^[a-z][a-z0-9]{0,15}$")                     # node1, pod2, switch: never a '-'



class NetLabError(KubebookError):
    """A network-namespace lab could not be planned, built or removed."""


def state_root() -> Path:
    return paths.netlabs_root()


def check_address(cidr: str) -> ipaddress.IPv4Interface:
    """``cidr`` as an interface address; refused unless it lies in 198.18.0.0/15 or 10.244.0.0/16."""
    try:
        iface = ipaddress.ip_interface(cidr)
    except ValueError as exc:
        raise NetLabError(f"{cidr!r} is not an address: {exc}") from None
    if not any(iface.ip in net for net in ALLOWED):
        raise NetLabError(f"{cidr} is outside the lab's ranges ({', '.join(map(str, ALLOWED))}); refused")
    return iface


def check_network(cidr: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise NetLabError(f"{cidr!r} is not a network: {exc}") from None
    if not any(net.subnet_of(r) for r in ALLOWED if net.version == r.version):
        raise NetLabError(f"{cidr} is outside the lab's ranges ({', '.join(map(str, ALLOWED))}); refused")
    return net


def _outside_event_loop(fn):
    """Run ``fn`` in a worker thread when this thread runs an asyncio loop (Jupyter's kernel does).

    pyroute2 0.9's synchronous API drives its own asyncio loop, which cannot start inside a running one."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(fn, *args, **kwargs).result()
    return wrapper


# ---------------------------------------------------------------- what a namespace holds
@dataclass(frozen=True)
class Link:
    """A device in ``ns``: ``veth`` (its peer ``peer`` in ``peer_ns``), ``bridge`` or ``vxlan``."""
    ns: str
    name: str
    kind: str
    peer: str = ""
    peer_ns: str = ""
    master: str = ""          # bridge to enslave the device to
    mtu: int = 0
    mac: str = ""
    vni: int = 0              # vxlan only
    port: int = 0             # vxlan UDP port (4789 IANA, 8472 the Linux and flannel default)
    local: str = ""           # vxlan source address on the underlay
    remote: str = ""          # vxlan point-to-point peer ("" : forwarding from the fdb)
    dev: str = ""             # vxlan underlay device
    learning: bool = True     # flannel turns learning off and programs the fdb itself

    def command(self) -> str:
        head = f"ip -n {self.ns} link add {self.name}"
        extra = (f" mtu {self.mtu}" if self.mtu else "") + (f" address {self.mac}" if self.mac else "")
        if self.kind == "veth":
            text = f"{head}{extra} type veth peer name {self.peer} netns {self.peer_ns}"
        elif self.kind == "vxlan":
            text = (f"{head}{extra} type vxlan id {self.vni}" + (f" local {self.local}" if self.local else "")
                    + (f" remote {self.remote}" if self.remote else "") + f" dstport {self.port}"
                    + (f" dev {self.dev}" if self.dev else "") + ("" if self.learning else " nolearning"))
        else:
            text = f"{head}{extra} type {self.kind}"
        if self.master:
            text += f"; ip -n {self.ns} link set {self.name} master {self.master}"
        return text + f"; ip -n {self.ns} link set {self.name} up" + \
            (f"; ip -n {self.peer_ns} link set {self.peer} up" if self.kind == "veth" else "")


@dataclass(frozen=True)
class Address:
    ns: str
    dev: str
    cidr: str

    def command(self) -> str:
        return f"ip -n {self.ns} addr add {self.cidr} dev {self.dev}"


@dataclass(frozen=True)
class Route:
    ns: str
    dst: str                  # "default" or a network
    dev: str
    via: str = ""
    onlink: bool = False      # the gateway is not in a connected subnet: trust it is on the link

    def command(self) -> str:
        return (f"ip -n {self.ns} route replace {self.dst}" + (f" via {self.via}" if self.via else "")
                + f" dev {self.dev}" + (" onlink" if self.onlink else ""))


@dataclass(frozen=True)
class Neighbour:
    """A permanent ARP entry: ``ip`` is at ``mac`` on ``dev`` (flanneld writes one per remote VTEP)."""
    ns: str
    dev: str
    ip: str
    mac: str

    def command(self) -> str:
        return f"ip -n {self.ns} neigh replace {self.ip} lladdr {self.mac} dev {self.dev} nud permanent"


@dataclass(frozen=True)
class Fdb:
    """A forwarding entry of a vxlan device: frames for ``mac`` go in UDP to underlay address ``dst``."""
    ns: str
    dev: str
    mac: str
    dst: str

    def command(self) -> str:
        return f"bridge -n {self.ns} fdb append {self.mac} dev {self.dev} dst {self.dst} self permanent"


@dataclass(frozen=True)
class Sysctl:
    ns: str
    key: str
    value: str

    def command(self) -> str:
        return f"ip netns exec {self.ns} sysctl -w {self.key}={self.value}"


Item = Link | Address | Route | Neighbour | Fdb | Sysctl
_PLURAL = {"Link": "links", "Address": "addresses", "Route": "routes", "Neighbour": "ARP entries",
           "Fdb": "fdb entries", "Sysctl": "sysctls"}


def validate(items: Iterable[Item], lab: "NetLab") -> list[Item]:
    """Every item inside the lab's own namespaces, every address in the allowed ranges."""
    items = list(items)
    for it in items:
        for ns in (it.ns, getattr(it, "peer_ns", "")):
            if ns and not ns.startswith(lab.prefix):
                raise NetLabError(f"{type(it).__name__} in namespace {ns!r}: the lab {lab.name!r} only "
                                  f"configures namespaces named {lab.prefix}*")
        if isinstance(it, Address):
            check_address(it.cidr)
        elif isinstance(it, Route):
            if it.dst != "default":
                check_network(it.dst)
            if it.via:
                check_address(it.via)
        elif isinstance(it, Neighbour):
            check_address(it.ip)
        elif isinstance(it, Fdb):
            check_address(it.dst)
        elif isinstance(it, Link) and it.kind == "vxlan":
            for a in (it.local, it.remote):
                if a:
                    check_address(a)
        elif isinstance(it, Sysctl) and not it.key.startswith("net."):
            raise NetLabError(f"sysctl {it.key}: only per-namespace net.* keys")
    return items


def plan_table(items: Iterable[Item]) -> pd.DataFrame:
    """What ``items`` would create, one row each, with the equivalent iproute2 command."""
    rows = []
    for it in items:
        kind = type(it).__name__.lower()
        if isinstance(it, Link):
            what = f"{it.name} ({it.kind}" + (f" ↔ {it.peer_ns}:{it.peer}" if it.kind == "veth" else "") + \
                   (f", VNI {it.vni}, port {it.port}" if it.kind == "vxlan" else "") + \
                   (f", in {it.master}" if it.master else "") + ")"
        elif isinstance(it, Address):
            what = f"{it.cidr} on {it.dev}"
        elif isinstance(it, Route):
            what = f"{it.dst}" + (f" via {it.via}" if it.via else "") + f" dev {it.dev}" + \
                   (" onlink" if it.onlink else "")
        elif isinstance(it, Neighbour):
            what = f"{it.ip} is at {it.mac} on {it.dev}"
        elif isinstance(it, Fdb):
            what = f"{it.mac} on {it.dev} → VTEP {it.dst}"
        else:
            what = f"{it.key}={it.value}"
        rows.append({"namespace": it.ns, "kind": kind, "what": what, "command": it.command()})
    return pd.DataFrame(rows, columns=["namespace", "kind", "what", "command"])


# ---------------------------------------------------------------- the lab
@dataclass
class NetLab:
    """Namespaces ``kb-<name>-<role>`` made and removed by one run, recorded in a state file.

    A netlab is always the creation of the run that builds it: the state file names that run, and
    another run refuses to build on it (its namespaces are that run's, left by ``cleanup=False`` or
    an interruption: ``python -m kubebook.network.netns teardown <name>`` removes them)."""
    name: str
    root: Path = field(default_factory=state_root)
    _planned: list[str] = field(default_factory=list, init=False, repr=False)  # every namespace a step named

    def __post_init__(self) -> None:
        if not _LAB_NAME.match(self.name or ""):
            raise NetLabError(f"netlab name {self.name!r}: a DNS-1123 label (lower-case letters, digits and '-') "
                              "of at most 40 characters")

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.name}-"

    def ns(self, role: str) -> str:
        if not _ROLE.match(role):
            raise NetLabError(f"namespace role {role!r}: lower-case letters and digits")
        return self.prefix + role

    def owns_name(self, namespace: str) -> bool:
        """``kb-<name>-<role>`` exactly: lab ``a`` does not claim lab ``a-b``'s ``kb-a-b-node1``."""
        return namespace.startswith(self.prefix) and bool(_ROLE.match(namespace[len(self.prefix):]))

    @property
    def state_file(self) -> Path:
        return self.root / f"{self.name}.json"

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def recorded(self) -> list[str]:
        """The namespaces this lab's run created (and has not deleted yet)."""
        return list(self._state().get("namespaces", []))

    def owner(self) -> str:
        """The run that created the recorded namespaces ("" when none are recorded)."""
        return self._state().get("run", "") if self.recorded() else ""

    def _record(self, names: list[str], run: str) -> None:
        paths.private_dir(self.root)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"lab": self.name, "run": run, "namespaces": sorted(set(names))}, indent=1))
        tmp.replace(self.state_file)

    @_outside_event_loop
    def existing(self) -> list[str]:
        """This lab's namespaces that exist now (recorded or not)."""
        from pyroute2 import netns
        return sorted(n for n in netns.listnetns() if self.owns_name(n))

    def check_owner(self, run: str) -> None:
        """Refuse (before any change) a lab whose namespaces another run created and left."""
        owner = self.owner()
        if owner and owner != run:
            raise NetLabError(f"netlab {self.name!r} is still there from run {owner} ({', '.join(self.recorded())}), "
                              f"and a run only builds and deletes its own: remove it with `python -m "
                              f"kubebook.network.netns teardown {self.name}`, or choose another network_lab")

    # -- create / delete (what the steps do)
    @_outside_event_loop
    def ensure_namespaces(self, names: Iterable[str], run: str) -> list[str]:
        """Create the missing ones for ``run`` (recorded first, so a crash never leaves an unrecorded namespace)."""
        from pyroute2 import netns
        names = sorted(set(names))
        if os.geteuid() != 0:
            raise NetLabError("network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run as root")
        self.check_owner(run)
        present = set(netns.listnetns())
        recorded = set(self.recorded())
        for n in names:
            if not self.owns_name(n):
                raise NetLabError(f"namespace {n!r} is not the lab's (kb-{self.name}-<role>)")
            if n in present and n not in recorded:
                raise NetLabError(f"namespace {n} exists but this lab did not create it; not touching it")
        made = [n for n in names if n not in present]
        self._record([*recorded, *names], run)
        for n in made:
            netns.create(n)
        return made

    @_outside_event_loop
    def delete_recorded(self) -> str:
        """Delete every recorded namespace (their links, routes and bridges go with them), then the record."""
        from pyroute2 import netns
        names = self.recorded()
        present = set(netns.listnetns())
        gone = [n for n in names if n in present]
        for n in gone:
            netns.remove(n)
        self.state_file.unlink(missing_ok=True)
        return f"deleted {', '.join(gone)}" if gone else "nothing to delete"

    # -- steps of a plan
    def apply(self, plan: Plan, items: Iterable[Item]) -> str | None:
        """Create ``items`` as steps of ``plan``: the namespaces they name that no earlier step made
        (this run's own, deleted at clean-up), then one step per namespace, in order. Refused in the
        dry run already for a lab another run left. Returns what was done (None in a dry run)."""
        items = validate(items, self)
        self.check_owner(plan.record.run)
        namespaces = list(dict.fromkeys(n for it in items for n in (it.ns, getattr(it, "peer_ns", "")) if n))
        new = [n for n in namespaces if n not in self._planned]
        self._planned = sorted({*self._planned, *namespaces})
        plan.at_cleanup(f"teardown-{self.name}", f"delete netlab {self.name}'s network namespaces (this run created "
                        "them; their devices and routes go with them)", self.delete_recorded,
                        command="; ".join(f"ip netns del {n}" for n in self._planned))
        results = []
        if new:
            results.append(plan.step(f"namespaces-{self.name}", f"create network namespaces {', '.join(new)} (this "
                                     f"run's own netlab, recorded in {self.state_file})",
                                     lambda: "created " + (", ".join(self.ensure_namespaces(namespaces, plan.record.run))
                                                           or "nothing: all there"),
                                     command="; ".join(f"ip netns add {n}" for n in new)))
        for ns in dict.fromkeys(it.ns for it in items):
            mine = [it for it in items if it.ns == ns]
            kinds = ", ".join(dict.fromkeys(_PLURAL[type(it).__name__] for it in mine))
            results.append(plan.step(f"configure-{ns}", f"configure {ns}: {kinds}", partial(_configure, mine),
                                     command="\n    $ ".join(it.command() for it in mine)))
        done = [r for r in results if r]
        return "; ".join(done) if plan.acting else None

    def rebuild(self, plan: Plan) -> str | None:
        """Delete this run's namespaces so the next :meth:`apply` starts from nothing (another backend)."""
        self.check_owner(plan.record.run)
        self._planned = []
        return plan.step(f"rebuild-{self.name}", f"delete netlab {self.name}'s namespaces to build it again",
                         self.delete_recorded, command="; ".join(f"ip netns del {n}" for n in self.recorded()) or
                         f"ip netns del {self.prefix}...")

    def teardown(self, plan: Plan) -> str | None:
        """Delete the lab now, as a step (clean-up does it too)."""
        return plan.step(f"teardown-{self.name}-now", f"delete netlab {self.name}'s network namespaces",
                         self.delete_recorded, command="; ".join(f"ip netns del {n}" for n in self.recorded()))

    def remove_links(self, plan: Plan, namespaces: Iterable[str], names: Iterable[str]) -> list:
        """Delete devices (``ip link del``) in the lab's namespaces; missing ones are fine."""
        names = list(names)
        results = []
        for ns in namespaces:
            if not self.owns_name(ns):
                raise NetLabError(f"namespace {ns!r} is not the lab's")
            results.append(plan.step(f"del-links-{ns}", f"delete {', '.join(names)} in {ns}",
                                     partial(self._remove_links, ns, names),
                                     command="; ".join(f"ip -n {ns} link del {n}" for n in names)))
        return results

    @_outside_event_loop
    def _remove_links(self, ns: str, names: list[str]) -> str:
        if ns not in self.existing():
            return "namespace gone"
        gone = []
        with _open(ns) as ipr:
            for n in names:
                idx = ipr.link_lookup(ifname=n)
                if idx:
                    ipr.link("del", index=idx[0])
                    gone.append(n)
        return f"deleted {', '.join(gone)}" if gone else "already gone"

    def try_route(self, plan: Plan, route: Route) -> str | None:
        """Ask the kernel in ``route.ns`` to add ``route``, then remove it again: its answer (a step).

        Shows why host-gw needs L2 adjacency: a gateway outside every connected subnet is refused."""
        validate([route], self)
        return plan.step(f"try-route-{route.via}", f"ask the kernel in {route.ns} for {route.dst} via {route.via} "
                         "(added and removed again)", partial(_try_route, route),
                         command=f"{Route(route.ns, route.dst, route.dev, route.via).command()}; "
                                 f"ip -n {route.ns} route del {route.dst}")

    # -- read back through netlink
    def _each(self, reader) -> pd.DataFrame:
        frames = [reader(ns) for ns in self.existing()]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else reader(None)

    def links(self) -> pd.DataFrame:
        return self._each(links)

    def addresses(self) -> pd.DataFrame:
        return self._each(addresses)

    def routes(self) -> pd.DataFrame:
        return self._each(routes)

    def neighbours(self) -> pd.DataFrame:
        return self._each(neighbours)

    def fdb(self) -> pd.DataFrame:
        return self._each(fdb)


@contextmanager
def temporary(name: str, **kwargs) -> Iterator[tuple[NetLab, Plan]]:
    """A :class:`NetLab` and a confirmed plan to build it, deleted on exit whatever happened (tests)."""
    lab = NetLab(name, **kwargs)
    plan = Plan(target=name, kind="netlab", confirm=name, log=lambda m: None)
    lab.check_owner(plan.record.run)
    try:
        yield lab, plan
    finally:
        lab.delete_recorded()


@_outside_event_loop
def _try_route(route: Route) -> str:
    with _open(route.ns) as ipr:
        spec = {"dst": route.dst, "oif": ipr.link_lookup(ifname=route.dev)[0], "gateway": route.via}
        try:
            ipr.route("add", **spec)
        except Exception as exc:  # noqa: BLE001 - the kernel's refusal is the answer shown
            code = getattr(exc, "code", None)
            return f"refused: {os.strerror(code) if code else exc}"
        ipr.route("del", **spec)
        return "accepted"


def _open(ns: str):
    from pyroute2 import NetNS
    return NetNS(ns, flags=0)   # flags=0: never create a namespace by opening it


@_outside_event_loop
def _configure(items: list[Item]) -> str:
    """Apply one namespace's items in order through netlink; idempotent (existing objects are kept)."""
    ns = items[0].ns
    done = 0
    with _open(ns) as ipr:
        def index(name: str) -> int:
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise NetLabError(f"{ns}: no device {name}")
            return found[0]

        for it in items:
            if isinstance(it, Link):
                if not ipr.link_lookup(ifname=it.name):
                    spec = {"ifname": it.name, "kind": it.kind}
                    if it.mtu:
                        spec["mtu"] = it.mtu
                    if it.mac:
                        spec["address"] = it.mac
                    if it.kind == "veth":
                        spec["peer"] = {"ifname": it.peer, "net_ns_fd": it.peer_ns, **({"mtu": it.mtu} if it.mtu else {})}
                    elif it.kind == "vxlan":
                        spec.update(vxlan_id=it.vni, vxlan_port=it.port, vxlan_learning=int(it.learning))
                        if it.local:
                            spec["vxlan_local"] = it.local
                        if it.remote:
                            spec["vxlan_group"] = it.remote   # unicast "group" is iproute2's `remote`
                        if it.dev:
                            spec["vxlan_link"] = index(it.dev)
                    ipr.link("add", **spec)
                    done += 1
                idx = index(it.name)
                if it.master:
                    ipr.link("set", index=idx, master=index(it.master))
                ipr.link("set", index=idx, state="up")
                if it.kind == "veth":
                    with _open(it.peer_ns) as peer:
                        peer.link("set", index=peer.link_lookup(ifname=it.peer)[0], state="up")
            elif isinstance(it, Address):
                iface = check_address(it.cidr)
                idx = index(it.dev)
                if not any(a.get("address") == str(iface.ip) for a in ipr.get_addr(index=idx)):
                    ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
                    done += 1
            elif isinstance(it, Route):
                spec = {"dst": "0.0.0.0/0" if it.dst == "default" else it.dst, "oif": index(it.dev)}
                if it.via:
                    spec["gateway"] = it.via
                if it.onlink:
                    spec["flags"] = RTNH_F_ONLINK
                ipr.route("replace", **spec)
                done += 1
            elif isinstance(it, Neighbour):
                ipr.neigh("replace", dst=it.ip, lladdr=it.mac, ifindex=index(it.dev), state=NUD_PERMANENT)
                done += 1
            elif isinstance(it, Fdb):
                idx = index(it.dev)
                if not any(f.get("lladdr") == it.mac and f.get("dst") == it.dst for f in ipr.fdb("dump", ifindex=idx)):
                    ipr.fdb("append", ifindex=idx, lladdr=it.mac, dst=it.dst)
                    done += 1
            elif isinstance(it, Sysctl):
                # sysctls are procfs files, not netlink: pyroute2 cannot set them in another namespace
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{it.key}={it.value}"], check=True)
                done += 1
    return f"{ns}: {done} change(s)"


# ---------------------------------------------------------------- netlink readers (one namespace)
def _kind(link) -> str:
    return link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) or ("loopback" if link.get("ifname") == "lo" else "")


@_outside_event_loop
def links(ns: str | None) -> pd.DataFrame:
    cols = ["namespace", "device", "kind", "state", "mtu", "mac", "master", "detail"]
    if ns is None:
        return pd.DataFrame(columns=cols)
    rows = []
    with _open(ns) as ipr:
        all_links = list(ipr.get_links())
        names = {l["index"]: l.get("ifname") for l in all_links}
        for l in all_links:
            kind = _kind(l)
            detail = ""
            if kind == "vxlan":
                data = dict(l.get(("IFLA_LINKINFO", "IFLA_INFO_DATA")).get("attrs") or [])
                detail = (f"VNI {data.get('IFLA_VXLAN_ID')} local {data.get('IFLA_VXLAN_LOCAL') or '-'} "
                          f"remote {data.get('IFLA_VXLAN_GROUP') or '-'} dstport {data.get('IFLA_VXLAN_PORT')}"
                          + ("" if data.get("IFLA_VXLAN_LEARNING") else " nolearning"))
            rows.append({"namespace": ns, "device": l.get("ifname"), "kind": kind,
                         "state": l.get("operstate"), "mtu": l.get("mtu"), "mac": l.get("address"),
                         "master": names.get(l.get("master"), ""), "detail": detail})
    return pd.DataFrame(rows, columns=cols)


@_outside_event_loop
def addresses(ns: str | None) -> pd.DataFrame:
    cols = ["namespace", "device", "address"]
    if ns is None:
        return pd.DataFrame(columns=cols)
    with _open(ns) as ipr:
        names = {l["index"]: l.get("ifname") for l in ipr.get_links()}
        rows = [{"namespace": ns, "device": names.get(a["index"]),
                 "address": f"{a.get('address')}/{a['prefixlen']}"}
                for a in ipr.get_addr(family=socket.AF_INET) if names.get(a["index"]) != "lo"]
    return pd.DataFrame(rows, columns=cols)


@_outside_event_loop
def routes(ns: str | None) -> pd.DataFrame:
    """The main table (``ip route``), as ``route -n`` in the course would show it."""
    cols = ["namespace", "destination", "gateway", "device", "flags"]
    if ns is None:
        return pd.DataFrame(columns=cols)
    rows = []
    with _open(ns) as ipr:
        names = {l["index"]: l.get("ifname") for l in ipr.get_links()}
        for r in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = f"{r.get('dst')}/{r['dst_len']}" if r.get("dst") else "default"
            flags = ",".join(f for f, on in (("onlink", r["flags"] & RTNH_F_ONLINK),) if on)
            rows.append({"namespace": ns, "destination": dst, "gateway": r.get("gateway") or "",
                         "device": names.get(r.get("oif"), ""), "flags": flags})
    return pd.DataFrame(rows, columns=cols)


@_outside_event_loop
def neighbours(ns: str | None) -> pd.DataFrame:
    """Permanent ARP entries (the ones flanneld writes; learned ones come and go)."""
    cols = ["namespace", "address", "mac", "device", "state"]
    if ns is None:
        return pd.DataFrame(columns=cols)
    with _open(ns) as ipr:
        names = {l["index"]: l.get("ifname") for l in ipr.get_links()}
        rows = [{"namespace": ns, "address": n.get("dst"), "mac": n.get("lladdr"),
                 "device": names.get(n["ifindex"]), "state": "permanent"}
                for n in ipr.get_neighbours(family=socket.AF_INET) if n["state"] & NUD_PERMANENT]
    return pd.DataFrame(rows, columns=cols)


@_outside_event_loop
def fdb(ns: str | None) -> pd.DataFrame:
    """Forwarding entries of vxlan devices that send to a remote VTEP (``bridge fdb show``)."""
    cols = ["namespace", "mac", "device", "dst"]
    if ns is None:
        return pd.DataFrame(columns=cols)
    rows = []
    with _open(ns) as ipr:
        for l in ipr.get_links():
            if _kind(l) != "vxlan":
                continue
            for f in ipr.fdb("dump", ifindex=l["index"]):
                if f.get("dst"):
                    rows.append({"namespace": ns, "mac": f.get("lladdr"), "device": l.get("ifname"),
                                 "dst": f.get("dst")})
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------- traffic inside the lab
def ping(ns: str, dst: str, *, count: int = 3, size: int = 56, dont_fragment: bool = False,
         timeout: float = 1.0) -> dict:
    """ICMP echo from inside ``ns`` (the host has no ``ping`` binary: :mod:`.icmp` sends them).

    Only addresses in the lab's ranges, only from the lab's namespaces."""
    if not ns.startswith(PREFIX):
        raise NetLabError(f"ping only from a kubebook lab namespace, not {ns!r}")
    check_address(dst)
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "kubebook.network.icmp", dst,
           "--count", str(count), "--size", str(size), "--timeout", str(timeout)]
    if dont_fragment:
        cmd.append("--dont-fragment")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=count * (timeout + 1) + 10)
    if out.returncode not in (0, 1):
        raise NetLabError(f"ping from {ns} failed: {out.stderr.strip() or out.stdout.strip()}")
    return {"from": ns, "to": dst, **json.loads(out.stdout)}


def largest_payload(ns: str, dst: str, *, low: int = 1000, high: int = 1472) -> int:
    """The largest ICMP payload that crosses unfragmented (DF set): path MTU minus 28 bytes of headers."""
    if not ping(ns, dst, count=1, size=low, dont_fragment=True)["received"]:
        raise NetLabError(f"{dst} does not answer {low}-byte pings from {ns}")
    while low < high:
        mid = (low + high + 1) // 2
        if ping(ns, dst, count=1, size=mid, dont_fragment=True)["received"]:
            low = mid
        else:
            high = mid - 1
    return low


def main(argv: list[str] | None = None) -> int:
    """``python -m kubebook.network.netns teardown NAME``: delete a netlab a run left (its recorded namespaces)."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m kubebook.network.netns", description=main.__doc__)
    parser.add_argument("action", choices=["teardown", "show"])
    parser.add_argument("name")
    args = parser.parse_args(argv)
    lab = NetLab(args.name)
    if args.action == "show":
        print(json.dumps({"lab": lab.name, "run": lab.owner(), "recorded": lab.recorded(), "existing": lab.existing()}))
        return 0
    print(lab.delete_recorded())
    return 0


if __name__ == "__main__":
    sys.exit(main())
