"""The local lab: a real control plane on loopback, built from upstream binaries.

etcd (TLS, client certificates required), kube-apiserver (Node,RBAC), kube-controller-manager
(node CIDRs, CSR signing), kube-scheduler and kwok (simulated kubelets) run as processes of
this machine, each listening on 127.0.0.1 on a port chosen free, so several labs run side
by side. Certificates follow kubeadm's layout under ``<lab>/pki``.

    with kubebook.lab.running() as lab:
        api = lab.api_client()

Modules: :mod:`.lab` (the :class:`Lab`), :mod:`.components` (the component table),
:mod:`.phases` (`up`), :mod:`.baseline` (`reset`), :mod:`.nodes`, :mod:`.ports`, :mod:`.probes`,
:mod:`.addons`, :mod:`.memory`; processes are started and stopped through :mod:`kubebook.process`.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from .. import paths
from ..errors import LabError
from .components import CLUSTER_CIDR, KWOK_ANNOTATION, MASTER, NAMES as COMPONENTS, SERVICE_CIDR
from .lab import Lab
from .nodes import node_names
from .phases import PHASE_NAMES
from ..ports import LISTEN_PORTS, LOOPBACK, free_loopback_port

__all__ = ["Lab", "LabError", "get", "running", "labs_root", "node_names", "free_loopback_port", "COMPONENTS",
           "PHASE_NAMES", "MASTER", "CLUSTER_CIDR", "SERVICE_CIDR", "KWOK_ANNOTATION", "LOOPBACK", "LISTEN_PORTS"]


def labs_root():
    return paths.labs_root()


def get(name: str = "kubebook") -> Lab:
    """The lab called ``name`` (its saved state if it exists, else a new one)."""
    if not name.replace("-", "").isalnum():
        raise LabError(f"lab name {name!r}: use letters, digits and dashes")
    return Lab(name=name, dir=labs_root() / name).refresh()


@contextlib.contextmanager
def running(name: str = "kubebook", *, nodes: int = 3, timeout: float = 180.0,
            keep: bool | None = None, log: Callable[[str], None] = lambda m: None) -> Iterator[Lab]:
    """A running lab for the ``with`` block; stops it afterwards if this call started it.

    ``keep=True`` leaves it running; ``keep=False`` always removes it.
    """
    lab = get(name)
    was_running = lab.is_running()
    remove = keep is False or (keep is None and not was_running)
    try:
        lab.up(nodes=nodes, timeout=timeout, log=log)
    except BaseException:
        if remove:  # a failed or interrupted start must not leave the processes it started behind
            lab.down(log=log)
        raise
    try:
        yield lab
    finally:
        if remove:
            lab.down(log=log)
