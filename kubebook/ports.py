"""Loopback ports for anything kubebook starts (labs, scratch etcd, add-ons, registries): below the
kernel's ephemeral range, and apart from every lab's recorded ports."""
from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from typing import Iterable

from . import paths

LOOPBACK = "127.0.0.1"


def _ephemeral_port_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Listening ports come from below the kernel's ephemeral range: a port the kernel hands out for
# port 0 can be taken again a moment later by any outgoing connection (the apiserver opens many
# to etcd), so the component that was meant to listen there fails with "address already in use".
LISTEN_PORTS = range(20000, max(20001, min(_ephemeral_port_floor(), 32768)))


def free_loopback_port(avoid: Iterable[int] = ()) -> int:
    """A loopback port nothing listens on, outside the ephemeral range and not in ``avoid``."""
    avoid = set(avoid) | ports_of_other_labs()
    start = random.randrange(len(LISTEN_PORTS))  # a random start keeps parallel labs apart
    for port in (*LISTEN_PORTS[start:], *LISTEN_PORTS[:start]):
        if port not in avoid and port_free(port):
            return port
    with socket.socket() as s:  # the range is exhausted: let the kernel choose
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def ports_of_other_labs() -> set[int]:
    """Ports recorded by every lab on this machine, so a stopped lab keeps its ports to come back to."""
    ports: set[int] = set()
    for state in paths.labs_root().glob("*/state.json"):
        try:
            ports.update(int(p) for p in json.loads(state.read_text()).get("ports", {}).values())
        except (OSError, ValueError, AttributeError):
            continue
    return ports


def port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now. Like Go's listeners, the check sets
    SO_REUSEADDR, so connections of a stopped server still in TIME_WAIT do not count."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False
