"""Every shipped runbook, run on the lab as an on-call engineer would run it: confirmed, against a
cluster that already holds objects the run must not disturb, with secrets it must not show.

Before the runs, the harness seeds (the ownership test):
- every namespace a runbook's ``Namespace`` parameters name (except the scratch namespaces a
  rehearsal stages its disaster in) with a marked ConfigMap and a Secret holding a canary;
- every node with a marked label and annotation.
Every ``Secret`` parameter gets a random canary, and every helm ``Values`` parameter a canary
password. After the runs: each runbook succeeded, no canary (nor a lab key, nor a JWT) is in any
executed notebook, HTML copy or log, every output is 0600, and every seeded object is still there,
unchanged.

``KUBEBOOK_TEST_RUNBOOKS=etcd,auth/rbac`` runs a subset (by topic or id).
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time

import pytest
import yaml
from kubernetes import client

from conftest import RUNBOOK_SECONDS, cluster_objects, count, remove_new_objects
from kubebook import parameters as P, paths, runner

pytestmark = pytest.mark.lab

SELECT = [s.strip() for s in os.environ.get("KUBEBOOK_TEST_RUNBOOKS", "").split(",") if s.strip()]
BOOKS = [b for b in runner.discover() if not SELECT or b.topic in SELECT or b.id in SELECT]
TOKEN = secrets.token_hex(4)
CANARY = "kbcanary" + secrets.token_hex(10)  # must never appear in an output
SEED_LABEL = "kubebook-test/pre-existing"


def _values_for(book, lab) -> dict:
    """The parameters the suite runs ``book`` with: the lab's, plus canaries for every secret."""
    values = dict(runner.lab_values(book, lab))
    if "network_lab" in book.parameters:
        # network namespaces are host-wide, labs are not: each worker's runs build a netlab of their own
        own = f"r{os.getpid() % 100000}"
        values["network_lab"] = own
        if values.get("confirm"):
            values["confirm"] = ", ".join(own if part == book.parameters["network_lab"].default else part
                                          for part in values["confirm"].split(", "))
    for p in book.parameters.values():
        if p.type is P.Secret:
            values[p.name] = f"{CANARY}-{p.name}"
        elif p.type is P.Values:
            values[p.name] = {**(values.get(p.name) or p.default or {}), "auth.adminPassword": f"{CANARY}-admin"}
    return values


def _canaries() -> list[str]:
    """The canary as it could leak: plain, and inside base64 (three alignments)."""
    forms = [CANARY]
    for shift in range(3):
        encoded = base64.b64encode(("x" * shift + CANARY).encode()).decode()
        forms.append(encoded[4 + (shift > 0) * 4: 20 + (shift > 0) * 4])
    return forms


def _seed_namespaces(lab, books) -> list[str]:
    found = set()
    for book in books:
        values = {**{p.name: p.default for p in book.parameters.values()}, **runner.lab_values(book, lab)}
        scratch = set(book.metadata.get("scratch_namespaces", []))
        for p in book.parameters.values():
            if p.type is P.Namespace and p.name not in scratch and values.get(p.name):
                found.add(values[p.name])
    return sorted(found)


def _seed_objects(namespace: str) -> list[dict]:
    labels = {SEED_LABEL: TOKEN}
    meta = {"name": f"pre-existing-{TOKEN}", "namespace": namespace, "labels": labels}
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
             "data": {"owner": "someone else", "note": "a run must leave this as it is"}},
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
             "stringData": {"password": f"{CANARY}-secret", "DB_PASSWORD": f"{CANARY}-db"}},
            # no replicas (nothing to schedule), but an env var holding a canary for anything that shows it
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
             "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                      "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                          "name": "app", "image": "nginx:1.27",
                          "env": [{"name": "DB_PASSWORD", "value": f"{CANARY}-env"}]}]}}}}]


def _read(api, kind: str, namespace: str, name: str):
    if kind == "Deployment":
        return client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    core = client.CoreV1Api(api)
    return (core.read_namespaced_config_map if kind == "ConfigMap" else core.read_namespaced_secret)(name, namespace)


def _create(api, body: dict) -> None:
    namespace = body["metadata"]["namespace"]
    if body["kind"] == "Deployment":
        client.AppsV1Api(api).create_namespaced_deployment(namespace, body)
    elif body["kind"] == "ConfigMap":
        client.CoreV1Api(api).create_namespaced_config_map(namespace, body)
    else:
        client.CoreV1Api(api).create_namespaced_secret(namespace, body)


def _delete(api, kind: str, namespace: str, name: str) -> None:
    if kind == "Deployment":
        client.AppsV1Api(api).delete_namespaced_deployment(name, namespace)
    elif kind == "ConfigMap":
        client.CoreV1Api(api).delete_namespaced_config_map(name, namespace)
    else:
        client.CoreV1Api(api).delete_namespaced_secret(name, namespace)


def _comparable(obj) -> dict:
    meta = obj.metadata
    controllers = ("deployment.kubernetes.io/",)  # written by the Deployment controller, not by a run
    return {"labels": meta.labels,
            "annotations": {k: v for k, v in (meta.annotations or {}).items() if not k.startswith(controllers)},
            "data": getattr(obj, "data", None), "spec": obj.spec.to_dict() if getattr(obj, "spec", None) else None}


class Runs:
    """The runbooks of each topic, run once per topic and in order (later ones may use what earlier
    ones made, e.g. a snapshot), after that topic's namespaces and the nodes were seeded. Topics run
    lazily, when a test first asks: under xdist each topic's tests share a worker (one lab each)."""

    def __init__(self, lab, out):
        self.lab, self.out = lab, out
        self.api = lab.api_client()
        self.core = client.CoreV1Api(self.api)
        self.results: dict[str, object] = {}
        self.seeded: dict[str, dict] = {}
        self.before = cluster_objects(self.api)
        self._nodes_marked = False

    def topic(self, topic: str) -> dict[str, object]:
        if topic not in self.seeded:
            books = [b for b in BOOKS if b.topic == topic]
            self.seeded[topic] = self._seed(books)
            for book in books:
                started = time.monotonic()
                try:
                    self.results[book.id] = runner.run(book, _values_for(book, self.lab), output_dir=self.out,
                                                       progress=False)
                except Exception as exc:  # noqa: BLE001 - re-raised by that runbook's tests only
                    self.results[book.id] = exc
                RUNBOOK_SECONDS[book.id] = time.monotonic() - started
        return self.results

    def _seed(self, books) -> dict:
        existing = {n.metadata.name for n in self.core.list_namespace().items}
        seeded_objects = {}
        for namespace in _seed_namespaces(self.lab, books):
            if namespace not in existing:
                self.core.create_namespace({"metadata": {"name": namespace, "labels": {SEED_LABEL: TOKEN}}})
            for body in _seed_objects(namespace):
                try:
                    _create(self.api, body)
                except client.ApiException as exc:
                    if exc.status != 409:  # seeded already for another topic
                        raise
                seeded_objects[(body["kind"], namespace, body["metadata"]["name"])] = None
        if not self._nodes_marked:
            for node in self.lab.nodes:
                self.core.patch_node(node, {"metadata": {"labels": {SEED_LABEL: TOKEN}, "annotations": {
                    SEED_LABEL: f"owned by someone else {TOKEN}"}}})
            self._nodes_marked = True
        for kind, namespace, name in seeded_objects:
            seeded_objects[(kind, namespace, name)] = _comparable(_read(self.api, kind, namespace, name))
        return seeded_objects

    def close(self) -> None:
        if self._nodes_marked:
            for node in self.lab.nodes:
                self.core.patch_node(node, {"metadata": {"labels": {SEED_LABEL: None},
                                                         "annotations": {SEED_LABEL: None}}})
        for objects in self.seeded.values():
            for kind, namespace, name in objects:
                try:
                    _delete(self.api, kind, namespace, name)
                except client.ApiException:
                    pass
        remove_new_objects(self.api, self.before)


@pytest.fixture(scope="module")
def runs(lab, tmp_path_factory):
    found = Runs(lab, tmp_path_factory.mktemp("runs"))
    yield found
    found.close()


def _result(runs, book):
    result = runs.topic(book.topic)[book.id]
    if isinstance(result, Exception):
        raise result
    return result


def _outputs(notebook_path) -> list[dict]:
    nb = json.loads(notebook_path.read_text())
    return [o for c in nb["cells"] for o in c.get("outputs", [])]


def _lab_secrets(lab) -> list[str]:
    """Every secret the lab holds, as it could leak: raw key bodies and their base64."""
    found = []
    for key_file in lab.pki.root.rglob("*.key"):
        body = "".join(l for l in key_file.read_text().splitlines() if "-----" not in l)
        found += [body[:60], body[-60:]]
    config = yaml.safe_load(lab.kubeconfig.read_text())
    found.append(config["users"][0]["user"]["client-key-data"][:60])
    return found


def _grouped(books) -> list:
    """One parameter per runbook, grouped by topic (pytest-xdist keeps a group on one worker)."""
    return [pytest.param(b, id=b.id, marks=pytest.mark.xdist_group(b.topic)) for b in books]


TOPICS = sorted({b.topic for b in BOOKS})


@pytest.mark.parametrize("book", _grouped(BOOKS))
def test_runbook_runs_on_the_lab(runs, book):
    result = _result(runs, book)
    assert result.status == "ok"
    errors = [o for o in _outputs(result.notebook) if o.get("output_type") == "error"]
    assert not errors
    assert result.html.is_file()


@pytest.mark.parametrize("book", _grouped(BOOKS))
def test_no_secret_reaches_the_executed_notebook(runs, lab, book):
    result = _result(runs, book)
    for path in (result.notebook, result.html):
        text = path.read_text()
        assert path.stat().st_mode & 0o777 == 0o600, path
        assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text), path
        assert not re.search(r"eyJhbGciOi[A-Za-z0-9_-]{20,}\.", text), path
        for secret in _lab_secrets(lab) + _canaries():
            assert secret not in text, f"{path.name} holds a secret ({secret[:12]}...)"
        count("canary_files")
        count("canary_searches", len(_canaries()))


@pytest.mark.parametrize("topic", [pytest.param(t, marks=pytest.mark.xdist_group(t)) for t in TOPICS])
def test_no_secret_reaches_a_log(runs, lab, topic):
    """Component logs, kubebook's tool logs and run records hold no canary either."""
    runs.topic(topic)
    roots = [lab.logs_dir, paths.cache_root() / "logs", paths.runs_root()]
    for root in [r for r in roots if r.is_dir()]:
        for path in [p for p in root.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000]:
            text = path.read_text(errors="replace")
            for secret in _canaries():
                assert secret not in text, f"{path} holds a canary"
            count("canary_files")
            count("canary_searches", len(_canaries()))


@pytest.mark.parametrize("topic", [pytest.param(t, marks=pytest.mark.xdist_group(t)) for t in TOPICS])
def test_pre_existing_objects_are_left_as_they_were(runs, lab, topic):
    """The ownership test: whatever the runs did, what existed before is there and unchanged."""
    runs.topic(topic)
    core = client.CoreV1Api(lab.api_client())
    seeded = runs.seeded[topic]
    for namespace in sorted({ns for _, ns, _ in seeded}):
        assert not core.read_namespace(namespace).metadata.deletion_timestamp, f"namespace {namespace} is being deleted"
    for (kind, namespace, name), then in seeded.items():
        try:
            now = _comparable(_read(lab.api_client(), kind, namespace, name))
        except client.ApiException as exc:
            pytest.fail(f"{kind} {namespace}/{name} existed before the runs and is gone ({exc.status})")
        assert now == then, f"{kind} {namespace}/{name} was changed by a run"
    for node in lab.nodes:
        meta = core.read_node(node).metadata
        assert (meta.labels or {}).get(SEED_LABEL) == TOKEN, f"node {node} lost its label"
        assert (meta.annotations or {}).get(SEED_LABEL) == f"owned by someone else {TOKEN}", node
    count("seeded_objects", len(seeded))
    count("seeded_namespaces", len({ns for _, ns, _ in seeded}))
    count("seeded_nodes", len(lab.nodes))


@pytest.mark.xdist_group("etcd")
def test_etcd_operations_shows_watch_events_and_registry(runs):
    book = next((b for b in BOOKS if b.id == "etcd/operations"), None)
    if book is None:
        pytest.skip("etcd/operations not selected")
    shown = json.dumps(_outputs(_result(runs, book).notebook))
    assert "/kubebook-demo/3" in shown and "value-3" in shown  # the watch saw the confirmed writes


@pytest.mark.xdist_group("etcd")
def test_etcd_operations_is_a_dry_run_without_confirm(lab, tmp_path):
    from kubebook import etcd
    book = runner.find("etcd/operations")
    with etcd.Etcd(**lab.etcd_params()) as etcd_client:
        before = etcd_client.count("/dry-run-check/")
        result = runner.run(book, {"lab": lab.name, "demo_prefix": "/dry-run-check/", "watch_seconds": 0.5},
                            output_dir=tmp_path, progress=False)
        assert etcd_client.count("/dry-run-check/") == before == 0
    assert any("DRY RUN" in "".join(o.get("text", "")) for o in _outputs(result.notebook))
