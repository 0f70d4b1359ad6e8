"""Every shipped runbook, executed headlessly on the lab; no secret reaches its outputs."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import cluster_objects, remove_new_objects
from kubebook import runner

pytestmark = pytest.mark.lab

BOOKS = runner.discover()


def _secrets_of(lab) -> list[str]:
    """Every secret the lab holds, as it could leak: raw key bodies and their base64."""
    found = []
    for key_file in lab.pki.root.rglob("*.key"):
        body = "".join(l for l in key_file.read_text().splitlines() if "-----" not in l)
        found += [body[:60], body[-60:]]
    config = yaml.safe_load(lab.kubeconfig.read_text())
    found.append(config["users"][0]["user"]["client-key-data"][:60])
    return found


@pytest.fixture(scope="module")
def executed(lab, tmp_path_factory):
    """Every runbook run once, in order (later ones may use what earlier ones made, e.g. a snapshot);
    a failure is kept and raised by that runbook's tests only."""
    out = tmp_path_factory.mktemp("runs")
    api = lab.api_client()
    before = cluster_objects(api)
    results: dict[str, object] = {}
    for book in BOOKS:
        try:
            results[book.id] = runner.run(book, runner.lab_values(book, lab), output_dir=out, progress=False)
        except Exception as exc:  # noqa: BLE001 - re-raised below, per runbook
            results[book.id] = exc
    yield results
    remove_new_objects(api, before)


def _result(executed, book_id):
    result = executed[book_id]
    if isinstance(result, Exception):
        raise result
    return result


@pytest.mark.parametrize("book", BOOKS, ids=[b.id for b in BOOKS])
def test_runbook_runs_on_the_lab(executed, book):
    result = _result(executed, book.id)
    assert result.status == "ok"
    nb = json.loads(result.notebook.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert result.html.is_file()


@pytest.mark.parametrize("book", BOOKS, ids=[b.id for b in BOOKS])
def test_no_secret_in_executed_notebook(executed, lab, book):
    result = _result(executed, book.id)
    text = result.notebook.read_text() + result.html.read_text()
    assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text)
    assert not re.search(r"eyJhbGciOi[A-Za-z0-9_-]{20,}\.", text)
    for secret in _secrets_of(lab):
        assert secret not in text


def test_etcd_operations_shows_watch_events_and_registry(executed):
    nb = json.loads(_result(executed, "etcd/operations").notebook.read_text())
    text = json.dumps(nb)
    assert "/luffy/3" in text and "value-3" in text  # the watch saw the confirmed writes
    assert "k8s-master" in text                       # member list
    assert "minions" not in text or "nodes" in text


def test_etcd_operations_is_a_dry_run_without_confirm(lab, tmp_path):
    from kubebook import etcd
    book = runner.find("etcd/operations")
    with etcd.Etcd(**lab.etcd_params()) as client:
        before = client.count("/dry-run-check/")
        result = runner.run(book, {"lab": lab.name, "demo_prefix": "/dry-run-check/", "watch_seconds": 0.5},
                            output_dir=tmp_path, progress=False)
        assert client.count("/dry-run-check/") == before == 0
    assert "DRY RUN" in result.notebook.read_text()
