"""Scaling on the lab: the scale subresource with a watched timeline, and the real HPA controller
(kube-controller-manager) acting on an autoscaling/v2 HPA.

The lab registers no metrics API, so these tests check what the HPA controller does without
metrics: it reports why it cannot compute a count, and still enforces minReplicas/maxReplicas.
Every test works in its own namespace and removes it (the session lab is shared).
"""
from __future__ import annotations

import contextlib
import itertools

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubebook.autoscaling import demo, hpa, scale
from kubebook.plan import Plan
from kubebook.scheduling import workloads
from kubebook.waits import WaitTimeout

pytestmark = pytest.mark.lab

_names = itertools.count()


@contextlib.contextmanager
def scratch(api, *, replicas: int = 1, requests: dict | None = None):
    namespace = f"autoscale-{next(_names)}"
    try:
        created = demo.ensure_demo(api, namespace, "web", replicas=replicas, requests=requests)
        assert created == {"namespace": True, "deployment": True}
        scale.wait_replicas(api, namespace, "web", replicas, timeout=60)
        yield namespace
    finally:
        workloads.delete_namespace(api, namespace)


def _metrics_api_registered(api) -> bool:
    try:
        client.ApiregistrationV1Api(api).read_api_service("v1beta1.metrics.k8s.io")
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def test_scale_out_and_in_with_a_watched_timeline(api):
    with scratch(api) as namespace:
        assert scale.scale(api, namespace, "web", 3) == "1 -> 3"
        timeline = scale.wait_replicas(api, namespace, "web", 3, timeout=60)
        assert timeline.iloc[-1][["desired", "current", "ready"]].tolist() == [3, 3, 3]
        assert len(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items) == 3
        assert scale.scale(api, namespace, "web", 1) == "3 -> 1"
        timeline = scale.wait_replicas(api, namespace, "web", 1, timeout=60)
        assert timeline.iloc[-1][["desired", "ready"]].tolist() == [1, 1]
        assert scale.current(api, namespace, "web").loc[0, "spec.replicas"] == 1


def test_dry_run_changes_nothing(api):
    with scratch(api) as namespace:
        plan = Plan(target="web", kind="deployment", log=lambda _: None)
        scale.scale(api, namespace, "web", 4, plan=plan)
        hpa.apply_hpa(api, namespace, hpa.hpa_body("web"), plan=plan)
        assert scale.read_scale(api, namespace, "web")["spec.replicas"] == 1
        assert not client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(namespace).items


def test_wait_replicas_times_out_when_pods_cannot_be_placed(api):
    with scratch(api) as namespace:
        # no node has that label: the new replicas stay Pending, the wait must give up
        body = demo.demo_deployment("web", replicas=2)
        body["spec"]["template"]["spec"]["nodeSelector"] = {"kubebook-test": "nowhere"}
        workloads.apply_deployment(api, namespace, body)
        with pytest.raises(WaitTimeout):
            scale.wait_replicas(api, namespace, "web", 2, timeout=5)


def test_hpa_reports_metrics_and_enforces_max_replicas(api):
    with scratch(api) as namespace:
        assert hpa.preflight_ok(hpa.preflight(api, namespace, "web"))
        body = hpa.hpa_body("web", min_replicas=1, max_replicas=2, scale_down_window=30)
        assert hpa.apply_hpa(api, namespace, body) == "created"
        assert hpa.apply_hpa(api, namespace, body) == "replaced"  # re-running is safe
        name = body["metadata"]["name"]
        hpa.watch_hpa(api, namespace, name, hpa.has_condition("ScalingActive"), timeout=90)
        active = hpa.conditions(api, namespace, name).set_index("type").loc["ScalingActive"]
        if not _metrics_api_registered(api):
            assert (active["status"], active["reason"]) == ("False", "FailedGetResourceMetric")
            assert "<unknown>" in hpa.get_hpa(api, namespace, name).loc[0, "targets"]
        # a manual scale above maxReplicas is corrected by the controller, metrics or not
        scale.scale(api, namespace, "web", 4)
        timeline = scale.wait_replicas(api, namespace, "web", 2, timeout=90)
        assert 4 in timeline["desired"].tolist() and timeline.iloc[-1]["desired"] == 2
        assert hpa.behavior(api, namespace, name).set_index("direction").loc[
            "scaleDown", "stabilization window (s)"] == 30
        assert scale.current(api, namespace, "web").loc[0, "autoscaler"] == name
        assert hpa.delete_hpa(api, namespace, name) == "deleted"
        assert hpa.delete_hpa(api, namespace, name) == "already gone"


def test_hpa_without_requests_cannot_use_utilization(api):
    with scratch(api, requests={}) as namespace:
        table = hpa.preflight(api, namespace, "web")
        assert not hpa.preflight_ok(table)
        body = hpa.hpa_body("web", memory=None)
        hpa.apply_hpa(api, namespace, body)
        hpa.watch_hpa(api, namespace, body["metadata"]["name"], hpa.has_condition("ScalingActive", "False"),
                      timeout=90)
        message = hpa.conditions(api, namespace, body["metadata"]["name"]).set_index("type").loc[
            "ScalingActive", "message"]
        if _metrics_api_registered(api):
            assert "missing request for cpu" in message
        else:
            assert "failed to get cpu utilization" in message


# ---- with the metrics add-on (metrics-server + simulated kubelet endpoint) ---------------------
# These come last: the add-on is started for them only and stopped when the module ends.

@pytest.fixture(scope="module")
def metrics_addon(lab):
    from kubebook.autoscaling import metrics
    was_running = metrics.addon_state(lab) is not None
    state = metrics.start_metrics_server(lab, timeout=120, log=lambda _: None)
    yield state
    if not was_running:
        metrics.stop_metrics_server(lab, log=lambda _: None)


def test_metrics_addon_serves_top_nodes(lab, api, metrics_addon):
    from kubebook.autoscaling import metrics
    row = metrics.apiservice(api).loc[0]
    assert (row["available"], row["service"]) == ("True", f"kube-system/metrics-server:{metrics_addon['port']}")
    service = client.CoreV1Api(api).read_namespaced_service("metrics-server", "kube-system")
    assert (service.spec.type, service.spec.external_name) == ("ExternalName", "localhost")
    top = metrics.top_nodes(api)
    assert sorted(top["name"]) == sorted(n.metadata.name for n in client.CoreV1Api(api).list_node().items)
    assert (top["memory (Mi)"] > 0).all()
    # starting again finds the running add-on (same PID) instead of a second one
    assert metrics.start_metrics_server(lab, log=lambda _: None)["pid"] == metrics_addon["pid"]


def test_hpa_scales_out_under_load_and_in_after_the_window(api, metrics_addon):
    with scratch(api) as namespace:
        body = hpa.hpa_body("web", min_replicas=1, max_replicas=3, scale_down_window=15)
        hpa.apply_hpa(api, namespace, body)
        name = body["metadata"]["name"]
        hpa.watch_hpa(api, namespace, name, hpa.has_condition("ScalingActive", "True"), timeout=120)
        hpa.simulate_load(api, namespace, "app=web", cpu="250m")
        out = hpa.watch_hpa(api, namespace, name, hpa.replicas_at(3), timeout=150)
        assert out["cpu %"].max() >= 200  # 250m of a 100m request, as metrics-server computed it
        hpa.simulate_load(api, namespace, "app=web")
        back = hpa.watch_hpa(api, namespace, name, hpa.replicas_at(1), timeout=180)
        assert back.iloc[0]["desired"] == 3 and back.iloc[-1]["current"] == 1


def test_metrics_api_by_url_with_a_service_account_token(api, metrics_addon):
    from kubebook.auth import tokens
    from kubebook.autoscaling import metrics
    with scratch(api, replicas=2) as namespace:
        granted = metrics.grant_metrics_reader(api, namespace, "reader")
        assert granted == {"service_account": True, "rbac": True}
        metrics.wait_pod_metrics(api, namespace, "app=web", timeout=120)
        token = tokens.request_token(api, namespace, "reader", duration_seconds=600)
        probe = tokens.probe(token, [f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods",
                                     "/apis/metrics.k8s.io/v1beta1/nodes"])
        assert probe["status"].tolist() == [200, 403]
        assert len(metrics.top_pods(token.api_client(), namespace)) == 2
        metrics.revoke_metrics_reader(api, namespace, "reader", granted)
        assert "reader" not in {s.metadata.name for s in
                                client.CoreV1Api(api).list_namespaced_service_account(namespace).items}
        assert not client.RbacAuthorizationV1Api(api).list_namespaced_role(namespace).items


def test_stop_removes_the_registration_and_the_process(lab, api, metrics_addon):
    from kubebook.autoscaling import metrics
    from kubebook.autoscaling.addon import proc_start_time
    assert metrics.stop_metrics_server(lab, log=lambda _: None) == "stopped"
    assert proc_start_time(metrics_addon["pid"]) != metrics_addon["start_time"]
    assert metrics.apiservice(api).loc[0, "available"] == "not registered"
    assert not any(metrics.PATH_ANNOTATION in (n.metadata.annotations or {})
                   for n in client.CoreV1Api(api).list_node().items)
    assert metrics.stop_metrics_server(lab, log=lambda _: None) == "not running"
