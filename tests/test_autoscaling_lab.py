"""Scaling on the lab without a metrics API: the scale steps with a watched timeline, the real HPA
controller (kube-controller-manager) enforcing min/max without metrics, and the waits that say why
they cannot succeed (no metrics API, Pods that cannot be placed) within seconds.

The module makes sure no metrics API is registered (the add-on tests are in
test_autoscaling_metrics_lab.py). Every test works in its own namespace, through a plan of its own
run, and cleans up with it (the session lab is shared).
"""
from __future__ import annotations

import itertools
import os

import pytest
from kubernetes import client

from kubebook import ownership
from conftest import demo_namespace
from kubebook.autoscaling import demo, hpa, metrics, scale
from kubebook.objects import Ref, objects
from kubebook.plan import Plan
from kubebook.waits import WaitBlocked

pytestmark = pytest.mark.lab

_names = itertools.count()
# a diagnosis must come well before this: a wait that runs into it fails the test with WaitTimeout
DIAGNOSIS_DEADLINE = 10


@pytest.fixture(scope="module", autouse=True)
def no_metrics_api(lab):
    """This module's tests need a cluster without metrics.k8s.io: stop the lab's add-on if it runs."""
    metrics.stop_metrics_server(lab, log=lambda _: None)
    assert metrics.blocked(lab.api_client()) is not None


@pytest.fixture
def run_id(monkeypatch):
    """Each test is its own run: its own record, so its clean-up touches only what it made."""
    run = f"pytest-autoscaling-{os.getpid()}-{next(_names)}"
    monkeypatch.setenv(ownership.RUN_ID_ENV, run)
    return run


def scratch(api, *, replicas: int = 1, requests: dict | None = None):
    return demo_namespace(api, "autoscale", replicas=replicas, requests=requests)


def test_scale_out_and_in_with_a_watched_timeline(api, run_id):
    with scratch(api) as (plan, namespace):
        assert scale.scale(plan, namespace, "web", 3) == "1 -> 3"
        timeline = scale.wait_replicas(plan, namespace, "web", 3, timeout=60)
        assert timeline.iloc[-1][["desired", "current", "ready"]].tolist() == [3, 3, 3]
        assert len(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items) == 3
        assert scale.scale(plan, namespace, "web", 1) == "3 -> 1"
        timeline = scale.wait_replicas(plan, namespace, "web", 1, timeout=60)
        assert timeline.iloc[-1][["desired", "ready"]].tolist() == [1, 1]
        assert scale.current(api, namespace, "web").loc[0, "spec.replicas"] == 1


def test_a_dry_run_changes_nothing(api, run_id):
    with scratch(api) as (_, namespace):
        dry = Plan(target=namespace, kind="namespace", cluster=api, log=lambda _: None)
        scale.scale(dry, namespace, "web", 4)
        hpa.apply_hpa(dry, namespace, hpa.hpa_body("web"))
        assert scale.wait_replicas(dry, namespace, "web", 4) is None
        assert scale.read_scale(api, namespace, "web")["spec.replicas"] == 1
        assert not client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(namespace).items
        assert set(dry.table()["status"]) == {"planned"}


def test_scaling_a_deployment_that_existed_puts_its_count_back(api, run_id):
    namespace = f"autoscale-{os.getpid()}-{next(_names)}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    try:
        # someone else's Deployment, with 2 replicas
        objects(api).create(demo.demo_deployment("web", replicas=2), namespace)
        plan = Plan(target=namespace, kind="namespace", confirm=namespace, cluster=api, log=lambda _: None)
        demo.ensure_demo(plan, namespace, "web", timeout=60)  # kept, backed up
        scale.scale(plan, namespace, "web", 4)
        scale.wait_replicas(plan, namespace, "web", 4, timeout=60)
        plan.cleanup()
        live = objects(api).get(Ref("Deployment", "web", namespace))
        assert live is not None and live["spec"]["replicas"] == 2
        assert not ownership.made_by(live)
    finally:
        client.CoreV1Api(api).delete_namespace(namespace)


def test_replicas_that_cannot_be_placed_are_diagnosed(api, run_id):
    with scratch(api) as (plan, namespace):
        # no node has that label: the new replicas stay Pending, and the wait says why at once
        body = demo.demo_deployment("web", replicas=2)
        body["spec"]["template"]["spec"]["nodeSelector"] = {"kubebook-test": "nowhere"}
        plan.apply(body, namespace)
        with pytest.raises(WaitBlocked, match="cannot be scheduled: 0/3 nodes are available.*node affinity/selector"):
            scale.follow_replicas(api, namespace, "web", 2, timeout=DIAGNOSIS_DEADLINE)


def test_hpa_enforces_max_replicas_without_metrics(api, run_id):
    with scratch(api) as (plan, namespace):
        assert hpa.preflight_ok(hpa.preflight(api, namespace, "web"))
        body = hpa.hpa_body("web", min_replicas=1, max_replicas=2, scale_down_window=30)
        assert hpa.apply_hpa(plan, namespace, body) == "created"
        assert hpa.apply_hpa(plan, namespace, body) == "replaced"  # re-running is safe
        name = body["metadata"]["name"]
        hpa.watch_hpa(api, namespace, name, hpa.has_condition("ScalingActive"), timeout=60)
        active = hpa.conditions(api, namespace, name).set_index("type").loc["ScalingActive"]
        assert (active["status"], active["reason"]) == ("False", "FailedGetResourceMetric")
        assert "<unknown>" in hpa.get_hpa(api, namespace, name).loc[0, "targets"]
        # a manual scale above maxReplicas is corrected by the controller, no metrics needed
        timeline = hpa.scale_past_max(plan, namespace, "web", replicas=4, max_replicas=2, timeout=60)
        assert 4 in timeline["desired"].tolist() and timeline.iloc[-1]["desired"] == 2
        assert hpa.behavior(api, namespace, name).set_index("direction").loc[
            "scaleDown", "stabilization window (s)"] == 30
        assert scale.current(api, namespace, "web").loc[0, "autoscaler"] == name
        assert hpa.delete_hpa(plan, namespace, name) == "deleted"
        assert hpa.get_hpa(api, namespace, name).empty


def test_a_second_hpa_for_the_same_deployment_is_refused(api, run_id):
    with scratch(api) as (plan, namespace):
        hpa.apply_hpa(plan, namespace, hpa.hpa_body("web"))
        with pytest.raises(Exception, match="already scales Deployment web"):
            hpa.apply_hpa(plan, namespace, hpa.hpa_body("web", name="another"))


def test_no_metrics_api_is_diagnosed(api, run_id):
    with scratch(api) as (plan, namespace):
        body = hpa.hpa_body("web")
        hpa.apply_hpa(plan, namespace, body)
        with pytest.raises(Exception, match="APIService v1beta1.metrics.k8s.io does not exist") as caught:
            hpa.wait_active(plan, namespace, body["metadata"]["name"], timeout=DIAGNOSIS_DEADLINE)
        assert isinstance(caught.value.cause, WaitBlocked)
        with pytest.raises(WaitBlocked, match="serves no metrics API"):
            metrics.pod_metrics_ready(api, namespace, "app=web", timeout=DIAGNOSIS_DEADLINE)


def test_an_unavailable_metrics_api_is_diagnosed(api, run_id):
    """An APIService whose Service does not exist: registered, never Available."""
    reg = client.ApiregistrationV1Api(api)
    _, registration = metrics._registration(443)
    registration["spec"]["service"]["name"] = f"absent-{run_id}"
    with scratch(api) as (_, namespace):
        reg.create_api_service(registration)
        try:  # an unavailable aggregated API breaks discovery (namespace deletion): remove it first
            with pytest.raises(WaitBlocked, match=f"is not Available .*kube-system/absent-{run_id}"):
                metrics.pod_metrics_ready(api, namespace, "app=web", timeout=DIAGNOSIS_DEADLINE)
        finally:
            reg.delete_api_service(registration["metadata"]["name"])
