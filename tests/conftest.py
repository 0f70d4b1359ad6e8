"""Shared fixtures. Lab tests share one lab per session: starting a control plane takes seconds."""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from kubebook import lab as labs


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if os.environ.get("KUBEBOOK_SKIP_LAB") == "1":
        skip = pytest.mark.skip(reason="KUBEBOOK_SKIP_LAB=1")
        for item in items:
            if "lab" in item.keywords:
                item.add_marker(skip)
    # Under pytest-xdist (make test: --dist loadgroup) a module's tests stay on one worker, in order,
    # sharing that worker's lab; a module may split itself further with its own xdist_group marks.
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    if config.getvalue("dist") == "loadgroup":
        items.sort(key=lambda item: _start_rank(_group(item)))  # stable: a group keeps its order


# The groups that take longest (worker-seconds in the clean-clone make test of 2026-12-04: test_etcd_faults
# 262, test_scheduling_faults 174, test_nbval 166, ...), started first. xdist hands groups out in
# collection order when make test passes --no-loadscope-reorder; its default orders them by number of
# tests, which started the 11 long tests of test_etcd_faults last and left one worker running alone
# at the end. Groups not listed follow in collection order.
LONGEST_GROUPS = ("test_etcd_faults", "test_scheduling_faults", "test_nbval", "test_schedule_lab",
                  "test_browser_widgets", "autoscaling", "test_autoscaling_metrics_lab", "test_etcd_runbooks",
                  "test_adversarial", "test_scheduling", "etcd", "test_auth", "test_runner", "test_classroom",
                  "scheduling", "auth", "test_drift", "test_etcd_unit")


def _group(item) -> str:
    marker = item.get_closest_marker("xdist_group")
    return marker.kwargs.get("name") or (marker.args[0] if marker.args else "")


def _start_rank(group: str) -> int:
    return LONGEST_GROUPS.index(group) if group in LONGEST_GROUPS else len(LONGEST_GROUPS)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: without xdist there is nothing to check
def pytest_xdist_node_collection_finished(node, ids):
    """Under ``--dist loadgroup`` each id a worker collected must end in its group (the hook above
    gives every test one), since xdist sends a group to one worker by that suffix. Where xdist cannot
    write it (pytest 9.2 with xdist 3.8: pytest-xdist#1386) the grouping is lost silently and every
    worker sets up the same module fixtures again: stop instead."""
    if node.config.getvalue("dist") != "loadgroup":
        return
    lost = [nodeid for nodeid in ids if "@" not in nodeid.rpartition("]")[2]]
    if lost:
        pytest.exit(f"pytest-xdist lost the test groups ({len(lost)} tests, first {lost[0]}; pytest-xdist#1386): "
                    "`make setup` installs the pytest the test extra pins", returncode=4)


@pytest.fixture(scope="session", autouse=True)
def _state_of_this_session(tmp_path_factory):
    """Runs made by the tests leave their records (kubebook.records), ownership records and backups in
    the session's own directory, never in the user's state; subprocesses inherit it. Labs and network
    labs stay in the shared roots: ports and network namespaces are host-wide, and each lab looks
    there for the ports the others hold."""
    from kubebook import paths
    os.environ.setdefault("KUBEBOOK_LAB_ROOT", str(paths.labs_root()))
    os.environ.setdefault("KUBEBOOK_NETLAB_ROOT", str(paths.netlabs_root()))
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    os.environ["KUBEBOOK_RUNS_ROOT"] = str(tmp_path_factory.mktemp("run-records"))
    yield


def new_run_identity(monkeypatch) -> str:
    """Make what follows another run, as a new kernel or ``kubebook run`` would be (kubebook.ownership)."""
    from kubebook import ownership
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(ownership.RUN_ID_ENV, run_id)
    return run_id


@pytest.fixture
def run(monkeypatch, tmp_path):
    """The test is a run of its own, as each JupyterLab kernel and each ``kubebook run`` is: a fresh
    run identity, and its backups and ownership records under ``tmp_path/state`` (the labs stay in
    the shared root, where each lab looks for the ports the others hold). Returns ``tmp_path``."""
    from kubebook import paths
    monkeypatch.setenv("KUBEBOOK_LAB_ROOT", str(paths.labs_root()))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    new_run_identity(monkeypatch)
    return tmp_path


@pytest.fixture(scope="session")
def lab():
    """A running lab (3 nodes) for the whole session, removed afterwards.

    ``KUBEBOOK_TEST_LAB=NAME`` uses (or starts) that lab instead and leaves it running, so a developer
    re-running one test file does not wait for a new control plane each time."""
    reuse = os.environ.get("KUBEBOOK_TEST_LAB")
    with labs.running(reuse or f"pytest-{os.getpid()}", nodes=3, timeout=240, keep=bool(reuse)) as running_lab:
        yield running_lab


@pytest.fixture(scope="session")
def api(lab):
    return lab.api_client()


def cluster_objects(api) -> tuple[set[str], set[str]]:
    """Names of the namespaces and PersistentVolumes that exist now."""
    from kubernetes import client
    core = client.CoreV1Api(api)
    return ({n.metadata.name for n in core.list_namespace().items},
            {v.metadata.name for v in core.list_persistent_volume().items})


def remove_new_objects(api, before: tuple[set[str], set[str]], *, timeout: float = 180) -> None:
    """Delete the namespaces and PersistentVolumes made since ``before`` and wait until they are gone,
    so the shared lab's nodes are empty again for the tests that count what runs on them."""
    from kubernetes import client
    from kubebook.waits import wait_for
    core = client.CoreV1Api(api)
    namespaces, volumes = cluster_objects(api)
    for name in namespaces - before[0]:
        core.delete_namespace(name)
    for name in volumes - before[1]:
        core.delete_persistent_volume(name)
    wait_for(api, "namespaces", lambda ns: not (set(ns) - before[0]), timeout=timeout,
             what="namespaces made by the tests gone")


# What the safety suites counted (adversarial inputs refused, canary forms searched, files searched).
# Under pytest-xdist each worker counts its share and the controller adds them up.
COUNTS: dict[str, int] = {}
NOTED: dict[str, set] = {}  # distinct things seen (parameters tried), merged across workers
RUNBOOK_SECONDS: dict[str, float] = {}  # each runbook's run in tests/test_runbooks.py
MODULE_SECONDS: dict[str, float] = {}  # set-up, call and tear-down of each test module's tests
WORKER_SECONDS: dict[str, float] = {}  # the same per xdist worker: the suite's wall time is its busiest worker's


def count(name: str, n: int = 1) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + n


def note(name: str, key: str) -> None:
    NOTED.setdefault(name, set()).add(key)


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker: hand the counts to the controller
        session.config.workeroutput["kubebook_counts"] = dict(COUNTS)
        session.config.workeroutput["kubebook_noted"] = {k: sorted(v) for k, v in NOTED.items()}
        session.config.workeroutput["kubebook_runbook_seconds"] = dict(RUNBOOK_SECONDS)


def pytest_testnodedown(node, error):
    output = getattr(node, "workeroutput", None) or {}
    for name, n in output.get("kubebook_counts", {}).items():
        count(name, n)
    for name, keys in output.get("kubebook_noted", {}).items():
        NOTED.setdefault(name, set()).update(keys)
    RUNBOOK_SECONDS.update(output.get("kubebook_runbook_seconds", {}))


def pytest_runtest_logreport(report):
    """Under xdist the controller sees every worker's reports here (and prints the summary)."""
    module = report.nodeid.split("::")[0]
    MODULE_SECONDS[module] = MODULE_SECONDS.get(module, 0.0) + report.duration
    worker = getattr(getattr(report, "node", None), "gateway", None)
    worker = worker.id if worker is not None else "main"
    WORKER_SECONDS[worker] = WORKER_SECONDS.get(worker, 0.0) + report.duration


def put_nodes_back(api, before: dict[str, dict]) -> None:
    """Nodes' labels, taints and cordon as :func:`kubebook.scheduling.nodes.node_state` recorded them,
    with the plain client: for changes made by hand (kubectl, as a student) or left by a failed test."""
    from kubernetes import client
    from kubebook.ownership import CONTROLLER_TAINTS
    from kubebook.scheduling import nodes
    core = client.CoreV1Api(api)
    for name, (then, _) in nodes.differences(api, before).items():
        now = core.read_node(name)
        labels = {**{k: None for k in (now.metadata.labels or {}) if k not in then["labels"]}, **then["labels"]}
        controller = [api.sanitize_for_serialization(t) for t in now.spec.taints or []
                      if t.key.startswith(CONTROLLER_TAINTS)]
        core.patch_node(name, {"metadata": {"labels": labels}, "spec": {
            "taints": controller + then["taints"] or None, "unschedulable": then["unschedulable"] or None}})


def pytest_terminal_summary(terminalreporter):
    if MODULE_SECONDS:
        slowest = sorted(MODULE_SECONDS.items(), key=lambda kv: -kv[1])[:15]
        terminalreporter.write_sep("-", "seconds per test module (set-up + call + tear-down, all workers)")
        for module, seconds in slowest:
            terminalreporter.write_line(f"{seconds:8.1f}  {module}")
        terminalreporter.write_line("busy seconds per worker: " + ", ".join(
            f"{worker} {seconds:.0f}" for worker, seconds in sorted(WORKER_SECONDS.items())))
    if RUNBOOK_SECONDS:
        terminalreporter.write_sep("-", "seconds per runbook (confirmed on the lab, tests/test_runbooks.py)")
        for book, seconds in sorted(RUNBOOK_SECONDS.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{seconds:8.1f}  {book}")
    if COUNTS.get("adversarial_inputs"):
        terminalreporter.write_line(
            f"adversarial parameters: {COUNTS['adversarial_inputs']} bad inputs refused with exit 2 before a kernel, "
            f"over {len(NOTED.get('adversarial_parameters', ()))} parameters of "
            f"{len({k.split(':')[0] for k in NOTED.get('adversarial_parameters', ())})} runbooks")
    if COUNTS.get("canary_files"):
        terminalreporter.write_line(
            f"secret canaries: {COUNTS['canary_searches']} searches (plain and base64 forms) in "
            f"{COUNTS['canary_files']} executed notebooks, HTML copies and logs; none found")
    if COUNTS.get("seeded_objects"):
        terminalreporter.write_line(
            f"ownership: {COUNTS['seeded_objects']} pre-existing objects in {COUNTS.get('seeded_namespaces', 0)} "
            f"namespaces and {COUNTS.get('seeded_nodes', 0)} node marks checked after the runs; all unchanged")


# etcd keys that change on their own: leases (node heartbeats, apiserver identity), events, and
# node objects (kwok reports node status every few seconds; labels, taints and cordon are compared
# through the API instead).
BACKGROUND_KEYS = ("/registry/leases/", "/registry/events/", "/registry/masterleases/", "/registry/minions/")


def etcd_revision(lab) -> int:
    from kubebook import etcd
    with etcd.Etcd(**lab.etcd_params()) as client:
        return client.revision()


def until_pods_refused(api, namespace: str, message: str, *, timeout: float = 20.0, what: str = "") -> None:
    """Wait until admission refuses a Pod in ``namespace`` with ``message``, asked by a server-side dry-run
    create (nothing is stored): admission is not watchable, and a new webhook configuration or quota
    takes the apiserver a moment to apply."""
    import time
    from kubernetes import client
    probe = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "admission-probe"},
             "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.CoreV1Api(api).create_namespaced_pod(namespace, probe, dry_run="All")
        except client.exceptions.ApiException as exc:
            if message in (exc.body or ""):
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what or 'admission'} did not refuse a Pod in {namespace} within {timeout:.0f}s")


def etcd_quiet_revision(lab, *, settle: float = 2.0, limit: float = 60.0) -> int:
    """etcd's revision once nothing but background keys changed for ``settle`` seconds: controllers
    finishing work that earlier tests started (aggregated ClusterRoles after a CRD came and went, a
    namespace being deleted, kube-root-ca.crt and default ServiceAccounts written again after a lab
    reset) must not count against the run measured next."""
    import time
    from kubernetes import client
    core = client.CoreV1Api(lab.api_client())
    deadline = time.monotonic() + limit
    while True:
        revision = etcd_revision(lab)
        time.sleep(settle)
        # a namespace deletion can pause longer than ``settle`` between its writes (the namespace
        # controller discovers every resource type first), so a Terminating namespace is not quiet
        terminating = any(ns.status.phase == "Terminating" for ns in core.list_namespace().items)
        if (not terminating and not etcd_changes_since(lab, revision)) or time.monotonic() > deadline:
            return revision


def etcd_changes_since(lab, revision: int) -> list[str]:
    """Keys written or deleted after ``revision``, other than BACKGROUND_KEYS (from etcd's own history)."""
    import threading
    from kubebook import etcd
    changed: list[str] = []
    done = threading.Event()
    with etcd.Etcd(**lab.etcd_params()) as client:
        now = client.revision()
        raw = client.client()

        def collect(response):
            if isinstance(response, Exception):
                done.set()
                return
            for event in response.events:
                key = event.key.decode(errors="replace")
                if not key.startswith(BACKGROUND_KEYS):
                    changed.append(key)
                if event.mod_revision >= now:
                    done.set()

        if now > revision:
            watch_id = raw.add_watch_prefix_callback("/", collect, start_revision=revision + 1)
            done.wait(10)
            raw.cancel_watch(watch_id)
    return sorted(set(changed))


@contextlib.contextmanager
def demo_namespace(api, prefix: str, *, replicas: int = 1, requests: dict | None = None):
    """A confirmed plan on a fresh namespace holding the demo Deployment "web", cleaned up afterwards.
    The name is random, not counted: two modules' counters once made the same namespace."""
    from kubebook.autoscaling import demo
    from kubebook.plan import Plan
    namespace = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    plan = Plan(target=namespace, kind="namespace", confirm=namespace, cluster=api, log=lambda _: None)
    try:
        demo.ensure_demo(plan, namespace, "web", replicas=replicas, requests=requests, timeout=60)
        yield plan, namespace
    finally:
        plan.cleanup()
