"""Every widget runbook in a real browser: Run All, the widget's content, one change through its
preview and confirm button, the cluster changed as shown, the widget updated; then the widget's
clean-up through the same preview and confirm, and the cluster as it was.

JupyterLab is started as the README says (``kubebook jupyter --lab NAME``) on the session's lab,
and no runbook parameter is edited: the runbooks find the lab through the server's environment.
The kernels are runs of their own (``interactive-...``): what they create carries their mark, so
the widgets' clean-up removes exactly that. The fixtures' own objects come from the tests' plans;
what a failed test leaves behind is removed with the plain client.
"""
from __future__ import annotations

import re
import uuid

import pytest
from kubernetes import client

from browser import Browser, Notebook, need_chromium, start_classroom
from conftest import put_nodes_back
from kubebook import ownership, paths, runner
from kubebook.objects import Ref, objects
from kubebook.plan import Plan
from kubebook.scheduling import nodes, workloads
from kubebook.waits import wait_deleted, wait_for

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def classroom(lab, tmp_path_factory):
    need_chromium()
    room = start_classroom(lab, runner.runbooks_root(), tmp_path_factory.mktemp("classroom") / "runbooks")
    yield room
    room.stop()


@pytest.fixture(scope="module")
def browser(classroom):
    chromium = Browser()
    yield chromium
    chromium.close()


@pytest.fixture
def open_notebook(browser, classroom, tmp_path):
    pages = []

    def open_(runbook: str) -> Notebook:
        page = Notebook(browser, classroom, runbook, tmp_path)
        pages.append(page)
        return page
    yield open_
    for page in pages:
        page.close()


def test_make_lab_url_shows_the_runbooks(browser, classroom, tmp_path):
    page = browser.context.new_page()
    try:
        page.goto(classroom.url.replace("/lab?", "/lab?reset&"))  # the printed URL, on a clean workspace
        page.wait_for_selector(".jp-DirListing-item", timeout=90_000)
        names = {e.inner_text() for e in page.query_selector_all(".jp-DirListing-itemName")}
        assert {"etcd", "scheduling", "auth", "autoscaling", "storage"} <= names
    finally:
        page.close()


# ---- node board ------------------------------------------------------------------------------
def _pods_by_node(api, namespace: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in client.CoreV1Api(api).list_namespaced_pod(namespace).items:
        if pod.spec.node_name and not pod.metadata.deletion_timestamp:
            counts[pod.spec.node_name] = counts.get(pod.spec.node_name, 0) + 1
    return counts


@pytest.fixture
def test_run(monkeypatch, tmp_path):
    """The test's own run identity and records (the kernels of JupyterLab have theirs)."""
    monkeypatch.setenv("KUBEBOOK_LAB_ROOT", str(paths.labs_root()))  # the labs stay where they are
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv(ownership.RUN_ID_ENV, f"test-{uuid.uuid4().hex[:8]}")


def acting(api, target: str, kind: str, also=()) -> Plan:
    scope = Plan(target=target, kind=kind, also=also, cluster=api, log=lambda m: None).confirm_text
    return Plan(target=target, kind=kind, also=also, confirm=scope, cluster=api, log=lambda m: None)


def _gone(api, refs: list[Ref]) -> None:
    """After a failed test only: delete what a widget left, and wait until it is gone."""
    for ref in refs:
        if objects(api).get(ref) is not None:
            objects(api).delete(ref)
            wait_deleted(api, ref, timeout=120)


@pytest.fixture
def board_workload(api, test_run):
    namespace, name = "kubebook-board-demo", "walkers"
    before = nodes.node_state(api, ["k8s-master", "k8s-slave1", "k8s-slave2"])
    plan = acting(api, namespace, "namespace")
    workloads.ensure_namespace(plan, namespace)
    workloads.apply_deployment(plan, namespace, workloads.deployment(name, replicas=4))
    workloads.settle(plan, namespace, name)
    yield namespace, name, before
    put_nodes_back(api, before)
    plan.cleanup()


def test_node_board_taint_moves_pods(open_notebook, api, board_workload):
    namespace, _, before = board_workload
    spread = _pods_by_node(api, namespace)
    node = max(spread, key=spread.get)  # the node carrying most of the demo's Pods
    nb = open_notebook("scheduling/node-board")
    nb.run_all()
    nb.wait_text(f"{namespace}/walkers")
    rows = {r["node"]: r for r in nb.table_rows()}
    assert set(rows) == {"k8s-master", "k8s-slave1", "k8s-slave2"}
    assert rows[node]["pods"].startswith(f"{spread[node]} /")

    nb.dropdown("node", node)
    nb.dropdown("change", "add taint")
    nb.text("value", "drunk=true:NoExecute")
    nb.click("Preview")
    nb.wait_text(f"taint node {node} with drunk=true:NoExecute")
    nb.wait_text("backed up, patched, restored at clean-up")  # the objects table: what becomes of the node
    assert nb.button(f"Confirm on node {node}").is_visible()
    nb.screenshot("node-board-preview")
    assert not any(t["key"] == "drunk" for t in nodes.node_state(api, [node])[node]["taints"])  # a preview changes nothing

    nb.click(f"Confirm on node {node}")
    wait_for(api, "pods", lambda pods: not any(p["spec"].get("nodeName") == node for p in pods.values())
             and sum(1 for p in pods.values() if (p.get("status") or {}).get("phase") == "Running") == 4,
             namespace=namespace, timeout=120, what=f"the demo's Pods evicted from {node} and running elsewhere")
    assert {"key": "drunk", "value": "true", "effect": "NoExecute"} in nodes.node_state(api, [node])[node]["taints"]
    def moved(table):  # the tainted node empty of the demo, its four Pods counted on the other nodes
        rows = {r["node"]: r for r in table}
        tainted = " ".join(rows.get(node, {}).values())
        return ("drunk=true:NoExecute" in tainted and f"{namespace}/" not in tainted
                and sum(int(rows[n]["pods"].split(" /")[0]) for n in rows if n != node) >= 4)
    nb.wait_rows(moved, what=f"the board showing {node} tainted and the demo's Pods on the other nodes")
    nb.screenshot("node-board-after-taint")

    nb.dropdown("change", "put back as before")
    nb.click("Preview")
    nb.wait_text(f"restore Node {node} from its backup")
    nb.click(f"Confirm on node {node}")
    wait_for(api, "nodes", lambda ns: nodes.node_state(api, [node]) == {node: before[node]}, timeout=60,
             what=f"node {node} as it was before the board's change")
    nb.wait_rows(lambda table: any(r["node"] == node and "drunk=true:NoExecute" not in " ".join(r.values())
                                   for r in table), what=f"the board showing {node} without the taint")


# ---- access matrix ---------------------------------------------------------------------------
def _click_cell(nb, subject: str, resource: str, verb: str) -> None:
    """Click the matrix button of (subject, resource, verb): rows are subject, resource, then one button per verb."""
    found = nb.page.evaluate("""([subject, resource, verb]) => {
        const grid = document.querySelector('.jp-Notebook .widget-gridbox');
        const cells = [...grid.children];
        const columns = getComputedStyle(grid).gridTemplateColumns.split(' ').length;
        const header = cells.slice(0, columns).map(c => c.textContent.trim());
        for (let i = columns; i < cells.length; i += columns) {
            if (cells[i].textContent.trim() === subject && cells[i + 1].textContent.trim() === resource) {
                cells[i + header.indexOf(verb)].click();
                return cells[i + header.indexOf(verb)].textContent.trim();
            }
        }
        return null;
    }""", [subject, resource, verb])
    assert found is not None, f"no cell {subject} {resource} {verb} in the matrix"


GRANT_NAMESPACE = "kubebook-auth"  # the access-matrix runbook's default namespace


@pytest.fixture
def no_grant(api):
    from kubebook.auth import grants
    namespaces = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    name = grants.grant_name("get", "pods")
    yield
    _gone(api, [Ref("RoleBinding", name, GRANT_NAMESPACE), Ref("Role", name, GRANT_NAMESPACE)]
          + ([] if GRANT_NAMESPACE in namespaces else [Ref("Namespace", GRANT_NAMESPACE)]))


def test_access_matrix_grant_through_rolebinding(open_notebook, api, no_grant):
    from kubebook.auth import access
    ns = GRANT_NAMESPACE
    assert not access.can(api, "User:dave", "get", "pods", namespace=ns)["allowed"]
    nb = open_notebook("auth/access-matrix")
    nb.run_all()
    nb.wait_text("User:dave", selector=".widget-gridbox")
    _click_cell(nb, "User:dave", "pods", "get")
    nb.wait_text(re.compile(rf"User:dave get pods in {ns}: denied"))
    nb.click("Preview grant")
    nb.wait_text(f"create Role {ns}/kubebook-grant-get-pods")
    nb.wait_text(f"create RoleBinding {ns}/kubebook-grant-get-pods")
    nb.screenshot("access-matrix-preview")
    assert not access.can(api, "User:dave", "get", "pods", namespace=ns)["allowed"]  # the preview changed nothing

    nb.click(f"Confirm on namespace {ns}")
    nb.wait_text(re.compile(rf"User:dave get pods in {ns}: allowed"), timeout=60)
    row = access.can(api, "User:dave", "get", "pods", namespace=ns)
    assert row["allowed"] and f'RoleBinding "kubebook-grant-get-pods/{ns}"' in row["reason"]
    nb.wait_text(f'granted by: RoleBinding {ns}/kubebook-grant-get-pods')
    binding = client.RbacAuthorizationV1Api(api).read_namespaced_role_binding("kubebook-grant-get-pods", ns)
    assert binding.metadata.annotations[ownership.CREATED_BY].startswith("interactive-")  # the kernel's run made it
    nb.screenshot("access-matrix-granted")

    nb.click("Preview clean-up")
    nb.wait_text(f"delete RoleBinding {ns}/kubebook-grant-get-pods")
    nb.click(f"Confirm on namespace {ns}")
    nb.wait_text(f"Done (clean up grants and revokes in {ns})", timeout=60)
    assert not access.can(api, "User:dave", "get", "pods", namespace=ns)["allowed"]
    names = {r.metadata.name for r in client.RbacAuthorizationV1Api(api).list_namespaced_role(ns).items}
    assert "kubebook-grant-get-pods" not in names
    nb.wait_text(re.compile(rf"User:dave get pods in {ns}: denied"), timeout=60)


# ---- etcd key browser ------------------------------------------------------------------------
@pytest.fixture
def classroom_secret(api, lab):
    from kubebook import etcd as etcd_ops
    core = client.CoreV1Api(api)
    core.create_namespaced_secret("default", {"metadata": {"name": "browser-db"},
                                              "stringData": {"password": "s3cret-browser-value"}})
    with etcd_ops.connect(lab=lab.name) as etcd:
        yield etcd
        etcd.delete("/luffy/classroom")
    core.delete_namespaced_secret("browser-db", "default")


def _pick(nb, label: str | re.Pattern, *, timeout: float = 30) -> None:
    """Choose the entry of the browser's list whose text is ``label`` (once the kernel has sent it)."""
    import time
    select = nb.page.locator(".jp-Notebook .widget-select select").first
    deadline = time.monotonic() + timeout
    while True:
        options = select.locator("option").all_inner_texts()
        match = [o for o in options if (label.search(o.replace("\xa0", " ")) if isinstance(label, re.Pattern)
                                        else o.replace("\xa0", " ") == label)]
        if match:
            select.select_option(label=match[0])
            return
        assert time.monotonic() < deadline, f"no entry {label!r} in {options}"
        nb.page.wait_for_timeout(200)  # the list is redrawn when the kernel's reply arrives


def test_etcd_browser_tree_decodes_masks_and_puts(open_notebook, classroom_secret):
    etcd = classroom_secret
    nb = open_notebook("etcd/key-browser")
    nb.run_all()
    nb.wait_text("/registry/", selector=".kubebook-prefix")
    _pick(nb, re.compile(r"^namespaces/ \(\d+\)$"))
    nb.wait_text("/registry/namespaces/", selector=".kubebook-prefix")
    _pick(nb, "kube-system")
    nb.wait_text("kind: Namespace", selector=".kubebook-value")
    nb.click("Up")
    nb.wait_text(re.compile(r"^/registry/$"), selector=".kubebook-prefix")
    _pick(nb, re.compile(r"^secrets/ "))
    nb.wait_text(re.compile(r"^/registry/secrets/$"), selector=".kubebook-prefix")
    _pick(nb, re.compile(r"^default/ "))
    _pick(nb, "browser-db")
    nb.wait_text("kind: Secret", selector=".kubebook-value")
    shown = nb.widget(".kubebook-value").first.inner_text()
    assert "password: '***(28 bytes)'" in shown and "s3cret-browser-value" not in shown
    assert "s3cret-browser-value" not in nb.page.content()
    nb.screenshot("etcd-browser-secret-masked")

    nb.text("key", "/luffy/classroom")
    nb.text("value", "from-the-browser")
    nb.click("Preview put")
    nb.wait_text("put /luffy/classroom = 'from-the-browser'")
    assert etcd.get_value("/luffy/classroom") is None  # the preview wrote nothing
    nb.click("Confirm on etcd member k8s-master")
    nb.wait_text("/luffy/", selector=".kubebook-prefix")
    assert etcd.get_value("/luffy/classroom") == b"from-the-browser"
    _pick(nb, "classroom")
    nb.wait_text("from-the-browser", selector=".kubebook-value")
    nb.screenshot("etcd-browser-put")

    nb.click("Preview clean-up")
    nb.wait_text("delete /luffy/classroom (this run created it)")
    assert etcd.get_value("/luffy/classroom") == b"from-the-browser"
    nb.click("Confirm on etcd member k8s-master")
    nb.wait_text("deleted")
    assert etcd.get_value("/luffy/classroom") is None


# ---- PV/PVC board ----------------------------------------------------------------------------
STORAGE_NAMESPACE, STORAGE_CLAIM = "kubebook-pv-board", "mysql-data"  # the pv-board runbook's defaults


@pytest.fixture
def storage_demo_gone(api):
    from kubebook.storage import board
    yield STORAGE_NAMESPACE, STORAGE_CLAIM
    _gone(api, [Ref("PersistentVolumeClaim", STORAGE_CLAIM, STORAGE_NAMESPACE)]
          + [Ref("PersistentVolume", name) for name in board.demo_volume_names(STORAGE_NAMESPACE, STORAGE_CLAIM)]
          + [Ref("Namespace", STORAGE_NAMESPACE)])


def test_pv_board_shows_blocking_rules_then_binds(open_notebook, api, storage_demo_gone):
    from kubebook.storage import board, volumes
    namespace, claim = storage_demo_gone
    core = client.CoreV1Api(api)
    nb = open_notebook("storage/pv-board")
    nb.run_all()
    nb.wait_text("PVs; updated")
    nb.click("Preview")
    nb.wait_text(f"create PersistentVolumeClaim {namespace}/{claim}")
    assert objects(api).get(Ref("Namespace", namespace)) is None  # the preview created nothing
    nb.click(f"Confirm on namespace {namespace} and persistentvolume/kubebook-{claim}-too-small")
    nb.wait_text(f"kubebook-{claim}-too-small", selector=".kubebook-table")
    nb.wait_text(re.compile(r"capacity: \d+Mi < requested 1Gi"))
    nb.wait_text("accessModes: lacks ReadWriteMany")
    nb.wait_text("selector: labels")
    nb.wait_text(f"claimRef/volumeName: claimed by {namespace}/{claim}-other")
    assert core.read_namespaced_persistent_volume_claim(claim, namespace).status.phase == "Pending"
    nb.screenshot("pv-board-blocked")

    nb.dropdown("change", "add a PV that fits the claim")
    nb.click("Preview")
    nb.wait_text(f"create PersistentVolume kubebook-{claim}-fits")
    nb.click(f"Confirm on namespace {namespace} and persistentvolume/kubebook-{claim}-fits")
    bound = volumes.wait_claim_phase(api, namespace, claim, "Bound", timeout=120)
    assert bound["spec"]["volumeName"] == f"kubebook-{claim}-fits"
    nb.wait_text(re.compile(rf"{namespace}/{claim}: Bound on kubebook-{claim}-fits"), selector=".kubebook-verdict", timeout=60)
    nb.screenshot("pv-board-bound")

    nb.dropdown("change", "clean up what the demo created")
    nb.click("Preview")
    nb.wait_text(f"delete PersistentVolumeClaim {namespace}/{claim}")
    nb.click(f"Confirm on namespace {namespace}")
    wait_for(api, "namespaces", lambda ns: namespace not in ns, timeout=150, what=f"namespace {namespace} gone")
    left = {v.metadata.name for v in core.list_persistent_volume().items}
    assert not left & set(board.demo_volume_names(namespace, claim))


# ---- HPA live chart --------------------------------------------------------------------------
HPA_NAMESPACE, HPA_DEPLOYMENT = "kubebook-hpa-chart", "eladmin-web"  # the hpa-chart runbook's defaults


@pytest.fixture
def hpa_demo_gone(api, lab):
    from kubebook.autoscaling import metrics
    running_before = metrics.is_available(api)
    namespaces = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    yield HPA_NAMESPACE, HPA_DEPLOYMENT, running_before
    if HPA_NAMESPACE not in namespaces:
        _gone(api, [Ref("Namespace", HPA_NAMESPACE)])
    if not running_before and metrics.addon_state(lab) is not None:
        metrics.stop_metrics_server(lab)


def test_hpa_chart_scales_out_under_load(open_notebook, api, lab, hpa_demo_gone):
    from kubebook.autoscaling import hpa, live, metrics
    namespace, name, metrics_before = hpa_demo_gone
    nb = open_notebook("autoscaling/hpa-chart")
    nb.run_all()
    nb.wait_text("Preview set-up creates it")
    nb.click("Preview set-up")
    nb.wait_text(f"apply HPA {namespace}/hpa-{name} for Deployment {name}: 1..3 replicas, cpu 80%")
    assert live.read(api, namespace, f"hpa-{name}") is None  # the preview created nothing
    nb.click(f"Confirm on namespace {namespace} and apiservice/{metrics.APISERVICE}")
    nb.wait_text(re.compile(r"HPA hpa-eladmin-web: 1 current, 1 desired replicas; cpu \d+%/80%"),
                 selector=".kubebook-hpa-status", timeout=150)

    nb.dropdown("CPU per Pod", "250m")
    nb.click("Preview load")
    nb.wait_text(f"simulate cpu 250m on every Pod app={name} in {namespace}")
    nb.click(f"Confirm on namespace {namespace}")
    hpa.watch_hpa(api, namespace, f"hpa-{name}", hpa.replicas_at(3), timeout=150)
    nb.wait_text(re.compile(r"HPA hpa-eladmin-web: 3 current, 3 desired replicas"),
                 selector=".kubebook-hpa-status", timeout=60)
    chart = nb.page.locator(".jp-Notebook img.widget-image").first
    assert chart.is_visible() and chart.evaluate("img => img.naturalWidth") > 300  # the PNG drawn from the history
    chart.scroll_into_view_if_needed()
    nb.screenshot("hpa-chart-scaled-out")

    nb.click("Preview clean-up")
    nb.wait_text(f"delete HorizontalPodAutoscaler {namespace}/hpa-{name}")
    nb.click(f"Confirm on namespace {namespace}")
    nb.wait_text("Done (clean up what the set-up created)", timeout=150)
    assert namespace not in {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    assert (metrics.addon_state(lab) is not None) == metrics_before  # the add-on stopped if the set-up started it
