"""The lab's metrics add-on (metrics-server + simulated kubelet endpoint) and the HPA controller
acting on real metrics: top, scale out under simulated load and in after the window, the metrics
API by URL with a ServiceAccount token, a missing request diagnosed, and the add-on stopped cleanly.

The add-on is started for this module and stopped at its end (if it was not running before).
"""
from __future__ import annotations

import itertools
import os

import pytest
from kubernetes import client

from kubebook import ownership, safety
from kubebook.auth import tokens
from conftest import demo_namespace
from kubebook.autoscaling import hpa, metrics
from kubebook.plan import Plan
from kubebook.waits import WaitBlocked

pytestmark = pytest.mark.lab

_names = itertools.count()
DIAGNOSIS_DEADLINE = 10


class LabTarget:
    """What the runbooks get from connect.target on a lab: the lab, and its API."""

    def __init__(self, lab):
        self.lab, self.api = lab, lab.api_client()


@pytest.fixture(scope="module")
def metrics_addon(lab):
    was_running = metrics.addon_state(lab) is not None
    state = metrics.start_metrics_server(lab, timeout=120, log=lambda _: None)
    yield state
    if not was_running:
        metrics.stop_metrics_server(lab, log=lambda _: None)


@pytest.fixture
def run_id(monkeypatch):
    run = f"pytest-metrics-{os.getpid()}-{next(_names)}"
    monkeypatch.setenv(ownership.RUN_ID_ENV, run)
    return run


def scratch(api, *, replicas: int = 1, requests: dict | None = None):
    return demo_namespace(api, "metrics", replicas=replicas, requests=requests)


def test_metrics_addon_serves_top_nodes(lab, api, metrics_addon):
    row = metrics.apiservice(api).loc[0]
    assert (row["available"], row["service"]) == ("True", f"kube-system/metrics-server:{metrics_addon['port']}")
    service = client.CoreV1Api(api).read_namespaced_service("metrics-server", "kube-system")
    assert (service.spec.type, service.spec.external_name) == ("ExternalName", "localhost")
    top = metrics.top_nodes(api)
    assert sorted(top["name"]) == sorted(n.metadata.name for n in client.CoreV1Api(api).list_node().items)
    assert (top["memory (Mi)"] > 0).all()
    assert metrics.blocked(api) is None
    # starting again finds the running add-on (same PID) instead of a second one
    assert metrics.start_metrics_server(lab, log=lambda _: None)["pid"] == metrics_addon["pid"]


def test_ensure_metrics_adds_no_step_when_metrics_are_served(lab, api, metrics_addon, run_id):
    plan = Plan(target="x", kind="namespace", cluster=api, log=lambda _: None)
    addon = metrics.ensure_metrics(plan, LabTarget(lab), log=lambda _: None)
    assert not addon.planned and plan.table().empty
    assert metrics.stop_if_started(plan, addon, LabTarget(lab)) is None


def test_hpa_scales_out_under_load_and_in_after_the_window(lab, api, metrics_addon, run_id):
    target = LabTarget(lab)
    with scratch(api) as (plan, namespace):
        body = hpa.hpa_body("web", min_replicas=1, max_replicas=3, scale_down_window=0)
        hpa.apply_hpa(plan, namespace, body)
        name = body["metadata"]["name"]
        hpa.simulate_load(plan, target, namespace, "app=web", cpu="250m")
        hpa.wait_active(plan, namespace, name, timeout=120)
        out = hpa.wait_scaled(plan, target, namespace, name, "web", 3, timeout=150)
        assert out["cpu %"].max() >= 200  # 250m of a 100m request, as metrics-server computed it
        assert out.iloc[-1][["desired", "ready"]].tolist() == [3, 3]
        back = hpa.scale_in_without_load(plan, target, namespace, "web", name, replicas=1, timeout=150)
        assert back.iloc[0]["desired"] == 3 and back.iloc[-1][["desired", "ready"]].tolist() == [1, 1]


def test_a_missing_request_is_diagnosed(api, metrics_addon, run_id):
    with scratch(api, requests={}) as (plan, namespace):
        assert not hpa.preflight_ok(hpa.preflight(api, namespace, "web"))
        # the controller checks requests only once it has the Pods' usage: let metrics-server have them first
        metrics.pod_metrics_ready(api, namespace, "app=web", timeout=60)
        body = hpa.hpa_body("web", memory=None)
        hpa.apply_hpa(plan, namespace, body)
        # it takes a new HPA up within one sync period (5 s on the lab); the reason comes with that first sync
        with pytest.raises(Exception, match="missing request for cpu") as caught:
            hpa.wait_active(plan, namespace, body["metadata"]["name"], timeout=15 + DIAGNOSIS_DEADLINE)
        assert isinstance(caught.value.cause, WaitBlocked)


def test_metrics_api_by_url_with_a_service_account_token(api, metrics_addon, run_id):
    with scratch(api, replicas=2) as (plan, namespace):
        metrics.grant_metrics_reader(plan, namespace, "reader")
        metrics.wait_pod_metrics(plan, namespace, "app=web", timeout=120)
        token = metrics.request_token(plan, namespace, "reader", duration_seconds=600)
        assert safety.mask_text(f"token {token._value}") == f"token {safety.masked(token._value)}"  # registered
        probe = tokens.probe(token, metrics.probe_paths(namespace))
        assert probe["status"].tolist() == [200, 200, 403]
        assert len(metrics.top_pods_as(token, namespace)) == 2
        assert "token-reader" in plan.table()["step"].tolist()
    with pytest.raises(client.ApiException):
        client.CoreV1Api(api).read_namespace(namespace)  # the clean-up removed the namespace it made, with the rest


# Last in the module: it stops the add-on the tests above share (starting it again costs two scrapes).
def test_stop_removes_the_registration_and_the_process(lab, api, metrics_addon):
    import re
    from pathlib import Path
    from kubebook import process
    log = Path(metrics_addon["log"]).read_text()
    server_pid = int(re.findall(r"metrics-server pid (\d+)", log)[-1])
    server = process.Record(server_pid, process.start_time(server_pid))
    assert server.alive()
    assert metrics.stop_metrics_server(lab, log=lambda _: None) == "stopped"
    assert not process.Record.from_dict(metrics_addon).alive()
    assert not server.alive(), "metrics-server stops with the add-on process"
    assert metrics.apiservice(api).loc[0, "available"] == "not registered"
    assert not any(metrics.PATH_ANNOTATION in (n.metadata.annotations or {})
                   for n in client.CoreV1Api(api).list_node().items)
    assert metrics.stop_metrics_server(lab, log=lambda _: None) == "not running"
    assert "does not exist" in metrics.blocked(api)


def test_an_add_on_that_exits_is_said_within_seconds_and_leaves_nothing(lab, api, monkeypatch):
    """metrics-server refusing its flags (here a resolution not above the kubelet request timeout)
    ends the start at once with metrics-server's own error, instead of the 120 s wait for an
    APIService nobody serves; and the registration is removed (a dangling APIService fails
    discovery, which holds every namespace deletion)."""
    was_running = metrics.addon_state(lab) is not None
    if was_running:
        metrics.stop_metrics_server(lab, log=lambda _: None)
    monkeypatch.setattr(metrics, "KUBELET_REQUEST_TIMEOUT", metrics.METRIC_RESOLUTION)
    try:
        # WaitBlocked, not the WaitTimeout that 120 s of waiting ends in: the exit was noticed (the
        # start itself, a Python process importing the client, took 10.6 s once under a loaded CI)
        with pytest.raises(WaitBlocked, match=r"exited: Error: metric-resolution should be larger than "
                                              r"kubelet-request-timeout.*were removed again"):
            metrics.start_metrics_server(lab, timeout=120, log=lambda _: None)
        assert metrics.apiservice(api).loc[0, "available"] == "not registered"
        assert metrics.addon_state(lab) is None
    finally:
        monkeypatch.undo()
        if was_running:
            metrics.start_metrics_server(lab, timeout=120, log=lambda _: None)
