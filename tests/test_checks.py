"""Step checks on the lab, both ways: the step done right passes; done wrong, the check's hint
names what is wrong. The steps are made as a student makes them, with kubectl and etcdctl."""
from __future__ import annotations

import os
import subprocess

import pytest
from kubernetes import client

from conftest import put_nodes_back
from kubebook.auth import step_checks as auth_checks
from kubebook.etcd import step_checks as etcd_checks
from kubebook.scheduling import step_checks as scheduling_checks
from kubebook.scheduling import nodes

pytestmark = pytest.mark.lab


def by_hand(lab, tool: str, *args: str) -> None:
    """Run ``kubectl``/``etcdctl`` against the lab as a student's terminal does (kubebook lab env)."""
    subprocess.run([lab.bin(tool), *args], env={**os.environ, **lab.env()}, check=True, capture_output=True,
                   timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def slave1(api):
    before = nodes.node_state(api, ["k8s-slave1", "k8s-slave2"])
    yield "k8s-slave1"
    put_nodes_back(api, before)
    assert nodes.unchanged(api, before)


def _one(row):
    assert list(row.columns) == ["step", "ok", "hint"] and len(row) == 1
    return row.iloc[0]


def test_taint_check_passes_the_right_taint(lab, api, slave1, capsys):
    by_hand(lab, "kubectl", "taint", "node", slave1, "gpu=true:NoSchedule")
    row = _one(scheduling_checks.taint_added(api, slave1, "gpu=true:NoSchedule"))
    assert row["ok"] and row["hint"] == ""
    assert capsys.readouterr().out.startswith("✓ node k8s-slave1 has taint gpu=true:NoSchedule")


def test_taint_check_names_the_wrong_effect(lab, api, slave1, capsys):
    by_hand(lab, "kubectl", "taint", "node", slave1, "gpu=true:PreferNoSchedule")
    row = _one(scheduling_checks.taint_added(api, slave1, "gpu=true:NoSchedule"))
    assert not row["ok"]
    assert "effect PreferNoSchedule, the step asks for NoSchedule" in row["hint"]
    assert "kubectl taint node k8s-slave1 gpu:PreferNoSchedule-" in row["hint"]
    assert "hint: " in capsys.readouterr().out


def test_taint_check_names_the_wrong_node(lab, api, slave1):
    by_hand(lab, "kubectl", "taint", "node", "k8s-slave2", "gpu=true:NoSchedule")
    row = _one(scheduling_checks.taint_added(api, slave1, "gpu=true:NoSchedule"))
    assert not row["ok"] and "is on k8s-slave2, not on k8s-slave1" in row["hint"]


def test_label_check_both_ways(lab, api, slave1):
    by_hand(lab, "kubectl", "label", "node", slave1, "disktype=hdd")
    wrong = _one(scheduling_checks.label_set(api, slave1, "disktype=ssd"))
    assert not wrong["ok"] and "has disktype=hdd, the step asks for 'ssd'" in wrong["hint"]
    by_hand(lab, "kubectl", "label", "node", slave1, "disktype=ssd", "--overwrite")
    assert _one(scheduling_checks.label_set(api, slave1, "disktype=ssd"))["ok"]


@pytest.fixture
def rbac_namespaces(api):
    from uuid import uuid4
    core = client.CoreV1Api(api)
    names = [f"checks-{uuid4().hex[:6]}" for _ in range(2)]  # a deleted namespace lingers while it terminates
    for name in names:
        core.create_namespace({"metadata": {"name": name}})
    yield names
    for name in names:
        core.delete_namespace(name)


def test_rbac_check_passes_the_right_binding(lab, api, rbac_namespaces):
    from kubebook.auth.access import wait_allowed
    ns, _ = rbac_namespaces
    by_hand(lab, "kubectl", "create", "role", "pod-reader", "-n", ns, "--verb=get,list", "--resource=pods")
    by_hand(lab, "kubectl", "create", "rolebinding", "read-pods", "-n", ns, "--role=pod-reader", "--user=zoro")
    wait_allowed(api, "User:zoro", "get", "pods", namespace=ns)
    assert _one(auth_checks.allowed(api, "User:zoro", "get", "pods", ns))["ok"]


def test_rbac_check_names_the_namespace_of_a_misplaced_binding(lab, api, rbac_namespaces):
    ns, other = rbac_namespaces
    by_hand(lab, "kubectl", "create", "role", "pod-reader", "-n", other, "--verb=get,list", "--resource=pods")
    by_hand(lab, "kubectl", "create", "rolebinding", "read-pods", "-n", other, "--role=pod-reader", "--user=usopp")
    row = _one(auth_checks.allowed(api, "User:usopp", "get", "pods", ns))
    assert not row["ok"]
    assert f"RoleBinding {other}/read-pods names User:usopp but is in namespace {other}" in row["hint"]


def test_rbac_check_names_a_role_without_the_verb(lab, api, rbac_namespaces):
    ns, _ = rbac_namespaces
    by_hand(lab, "kubectl", "create", "role", "pod-lister", "-n", ns, "--verb=list", "--resource=pods")
    by_hand(lab, "kubectl", "create", "rolebinding", "list-pods", "-n", ns, "--role=pod-lister", "--group=crew")
    row = _one(auth_checks.allowed(api, "Group:crew", "delete", "pods", ns))
    assert not row["ok"] and "binds Role pod-lister, whose rules (list on pods) do not allow delete pods" in row["hint"]


def test_rbac_check_names_the_wrong_subject_kind(lab, api, rbac_namespaces):
    ns, _ = rbac_namespaces
    by_hand(lab, "kubectl", "create", "role", "pod-reader", "-n", ns, "--verb=get", "--resource=pods")
    by_hand(lab, "kubectl", "create", "rolebinding", "read-pods", "-n", ns, "--role=pod-reader", "--group=nami")
    row = _one(auth_checks.allowed(api, "User:nami", "get", "pods", ns))
    assert not row["ok"] and "binds Group:nami, not User:nami: the kind differs" in row["hint"]


@pytest.fixture
def etcd(lab):
    from kubebook import etcd as etcd_ops
    with etcd_ops.connect(lab=lab.name) as client_:
        yield client_
        for key in ("/luffy/check", "luffy/check", "/luffy/chek"):
            client_.delete(key)


def test_etcd_check_both_ways(lab, etcd):
    by_hand(lab, "etcdctl", "put", "luffy/check", "hello")
    wrong = _one(etcd_checks.key_holds(etcd, "/luffy/check", "hello"))
    assert not wrong["ok"] and "written as 'luffy/check' without the leading '/'" in wrong["hint"]
    etcd.delete("luffy/check")
    by_hand(lab, "etcdctl", "put", "/luffy/chek", "hello")
    typo = _one(etcd_checks.key_holds(etcd, "/luffy/check", "hello"))
    assert not typo["ok"] and "there is '/luffy/chek'" in typo["hint"]
    by_hand(lab, "etcdctl", "put", "/luffy/check", "hullo")
    value = _one(etcd_checks.key_holds(etcd, "/luffy/check", "hello"))
    assert not value["ok"] and "holds 'hullo', the step asks for 'hello'" in value["hint"]
    by_hand(lab, "etcdctl", "put", "/luffy/check", "hello")
    assert _one(etcd_checks.key_holds(etcd, "/luffy/check", "hello"))["ok"]
