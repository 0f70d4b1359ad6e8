"""The lab's pieces that need no running lab: ports, the component table, the phase list."""
from __future__ import annotations

import json

import pytest

from kubebook import lab as labs
from kubebook.errors import LabError
from kubebook.lab import components, phases


def test_listening_ports_avoid_the_ephemeral_range_and_other_labs(tmp_path, monkeypatch):
    floor = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    other = tmp_path / "other-lab"
    other.mkdir()
    recorded = list(labs.LISTEN_PORTS)[:-1]  # every port but one is recorded by another lab
    (other / "state.json").write_text(json.dumps({"ports": dict(enumerate(recorded))}))
    monkeypatch.setenv("KUBEBOOK_LAB_ROOT", str(tmp_path))
    assert labs.free_loopback_port() == labs.LISTEN_PORTS[-1]
    (other / "state.json").unlink()
    ports = {labs.free_loopback_port(avoid=[20000]) for _ in range(50)}
    assert all(20000 < port < floor for port in ports)


def test_every_component_has_its_ports_and_a_health_check_on_one_of_them():
    assert labs.COMPONENTS == ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
    for component in components.COMPONENTS:
        assert component.ports and component.health.port in component.ports
    ports = [p for c in components.COMPONENTS for p in c.ports]
    assert len(ports) == len(set(ports)), "a port belongs to one component"


def test_phases_are_selected_in_their_own_order_and_unknown_names_are_refused():
    assert [p.name for p in phases.select(["ports", "certs"])] == ["certs", "ports"]
    assert labs.PHASE_NAMES[0] == "binaries" and labs.PHASE_NAMES[-2:] == ("baseline", "trim")
    with pytest.raises(LabError, match="unknown phase nope"):
        phases.select(["nope"])


def test_build_progress_counts_what_its_total_counts(capsys):
    from kubebook.binaries import _Progress
    progress = _Progress("etcd test", total=2)
    for line in ("runtime", "internal/abi", "go: downloading x", "go.etcd.io/etcd/server/v3", "k8s.io/klog/v2"):
        progress(line)
    progress.close()
    assert progress.done == 2 and "etcd test: 2 packages compiled" in capsys.readouterr().err
