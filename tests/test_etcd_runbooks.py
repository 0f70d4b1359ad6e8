"""The etcd runbooks as an on-call engineer runs them on the lab, beyond what the shared harness
checks: a dry run of each writes nothing to etcd, rehearsals refuse what is not theirs, the demo
writes put back what was there, and the outputs say where etcd's settings came from."""
from __future__ import annotations

import json

import pytest
from kubernetes import client

from conftest import etcd_changes_since, etcd_quiet_revision
from kubebook import etcd, runner
from kubebook.errors import RunbookFailed
from kubebook.objects import Ref
from kubebook.waits import wait_deleted

pytestmark = pytest.mark.lab

ETCD_BOOKS = [b for b in runner.discover() if b.topic == "etcd"]


def _outputs(result_or_path) -> str:
    path = getattr(result_or_path, "notebook", result_or_path)
    nb = json.loads(path.read_text())
    return json.dumps([o for c in nb["cells"] for o in c.get("outputs", [])])


@pytest.mark.parametrize("book", ETCD_BOOKS, ids=[b.id for b in ETCD_BOOKS])
def test_a_dry_run_writes_nothing_to_etcd(lab, tmp_path, book):
    values = {**runner.lab_values(book, lab), **({"confirm": ""} if "confirm" in book.parameters else {})}
    if book.id == "etcd/new-machine-restore":  # it needs a snapshot to read
        with etcd.Etcd(**lab.etcd_params()) as client_:
            from kubebook.etcd import snapshot
            values["snapshot"] = snapshot.save(client_, tmp_path / "snaps", progress=False).path
    revision = etcd_quiet_revision(lab)
    result = runner.run(book, values, output_dir=tmp_path, progress=False)
    assert etcd_changes_since(lab, revision) == [], f"{book.id} wrote to etcd in a dry run"
    if "confirm" in book.parameters:
        assert "DRY RUN" in _outputs(result)


def test_the_demo_writes_put_back_the_values_they_replaced(lab, tmp_path):
    with etcd.Etcd(**lab.etcd_params()) as client_:
        client_.put("/kubebook-putback/2", "someone else's value")
        result = runner.run(runner.find("etcd/operations"),
                            {"lab": lab.name, "confirm": "k8s-master", "demo_prefix": "/kubebook-putback/"},
                            output_dir=tmp_path, progress=False)
        assert client_.get_value("/kubebook-putback/2") == b"someone else's value"
        assert client_.count("/kubebook-putback/") == 1, "only what was there before is left"
        client_.delete("/kubebook-putback/2")
    shown = _outputs(result)
    assert "/kubebook-putback/3" in shown and "value-3" in shown, "the watch saw the confirmed writes"
    assert "2 deleted, 1 put back" in shown
    assert "endpoint and certificates: lab " + lab.name in shown


def test_demo_keys_under_registry_are_refused_before_any_write(lab, tmp_path):
    revision = etcd_quiet_revision(lab)
    with pytest.raises(RunbookFailed, match="overwrite Kubernetes"):
        runner.run(runner.find("etcd/operations"), {"lab": lab.name, "confirm": "k8s-master",
                                                    "demo_prefix": "/registry/configmaps/default/"},
                   output_dir=tmp_path, progress=False)
    assert etcd_changes_since(lab, revision) == []


@pytest.mark.parametrize("book_id", ["etcd/stuck-namespace", "etcd/namespace-recovery"])
def test_a_rehearsal_refuses_a_namespace_somebody_else_made(lab, api, tmp_path, book_id):
    core = client.CoreV1Api(api)
    namespace = "kubebook-someones-" + book_id.split("/")[1]
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "precious"}, "data": {"v": "1"}})
    try:
        book = runner.find(book_id)
        values = {**runner.lab_values(book, lab), "namespace": namespace, "confirm": namespace}
        with pytest.raises(RunbookFailed, match="RehearsalRefused") as failure:
            runner.run(book, values, output_dir=tmp_path, progress=False)
        assert "was not made by a kubebook rehearsal" in str(failure.value)
        assert "\n" not in str(failure.value)
        assert core.read_namespace(namespace).status.phase == "Active"
        assert core.read_namespaced_config_map("precious", namespace).data == {"v": "1"}
    finally:
        core.delete_namespace(namespace)
        wait_deleted(api, Ref("Namespace", namespace))


def test_a_rehearsal_outside_a_lab_is_refused_and_changes_nothing(lab, api, tmp_path):
    book = runner.find("etcd/stuck-namespace")
    revision = etcd_quiet_revision(lab)
    with pytest.raises(RunbookFailed, match="has never been started"):
        runner.run(book, {"lab": "nonexistent", "rehearse": True, "namespace": "kubebook-stuck-x",
                          "confirm": "kubebook-stuck-x"}, output_dir=tmp_path, progress=False)
    with pytest.raises(RunbookFailed, match="rehearses on a kubebook lab only"):
        runner.run(book, {"kubeconfig": str(lab.kubeconfig), "rehearse": True, "namespace": "kubebook-stuck-x",
                          "confirm": "kubebook-stuck-x"}, output_dir=tmp_path, progress=False)
    assert etcd_changes_since(lab, revision) == []
