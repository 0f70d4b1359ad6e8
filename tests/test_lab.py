"""The lab against its real components: nothing here is mocked."""
from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubebook import etcd, kubeconfig, lab as labs, ports, process
from kubebook.connect import api_client
from kubebook.waits import wait_for

pytestmark = pytest.mark.lab


def test_course_nodes_are_ready_with_kubeadm_roles(api):
    nodes = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    assert {"k8s-master", "k8s-slave1", "k8s-slave2"} <= set(nodes)
    for n in nodes.values():
        ready = [c for c in n.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", n.metadata.name
        assert n.metadata.labels["kubernetes.io/hostname"] == n.metadata.name
        assert n.status.allocatable["cpu"] == "2"
        assert all(a.address.startswith("127.") for a in n.status.addresses if a.type == "InternalIP")
    master = nodes["k8s-master"]
    assert "node-role.kubernetes.io/control-plane" in master.metadata.labels
    assert [(t.key, t.effect) for t in master.spec.taints] == [("node-role.kubernetes.io/control-plane",
                                                                 "NoSchedule")]
    # kube-controller-manager --allocate-node-cidrs gave each node a slice of 10.244.0.0/16
    assert all(n.spec.pod_cidr and n.spec.pod_cidr.startswith("10.244.") for n in nodes.values())


def test_every_component_listens_on_loopback_only(lab):
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    pids = {p.pid for p in lab.processes.values()}
    ours = [l for l in out.splitlines() if any(f"pid={pid}," in l for pid in pids)]
    assert ours, "no listening socket found for the lab's processes"
    for line in ours:
        local = line.split()[3]
        assert local.startswith("127.0.0.1:"), line


def test_etcd_refuses_a_client_without_certificate(lab):
    with etcd.Etcd(lab.etcd_endpoint, cacert=str(lab.etcd_ca), cert=None, key=None, timeout=3) as anonymous:
        health = anonymous.endpoint_health()
    assert not health["HEALTH"].iloc[0]
    with etcd.Etcd(**lab.etcd_params()) as trusted:
        assert trusted.is_healthy()


def test_unauthenticated_request_is_refused(lab):
    ctx = ssl.create_default_context(cafile=str(lab.pki.ca_crt))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{lab.server}/api/v1/namespaces/kube-system/secrets", context=ctx, timeout=5)
    assert info.value.code in (401, 403)


def test_user_without_bindings_is_forbidden(lab, tmp_path):
    pair = lab.pki.client("nobody", ("nogroup",))
    path = kubeconfig.write(tmp_path / "nobody.conf", kubeconfig.build(
        server=lab.server, ca_pem=lab.pki.ca_crt.read_bytes(), cert_pem=pair.cert_pem, key_pem=pair.key_pem,
        cluster="lab", user="nobody", context="nobody@lab"))
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(api_client(path)).list_namespaced_pod("default")
    assert info.value.status == 403
    import json
    assert 'User "nobody" cannot list resource "pods"' in json.loads(info.value.body)["message"]


def test_deployment_pod_runs_on_a_node_chosen_by_the_scheduler(api):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    ns = "lab-deploy"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace=ns, timeout=30,
                 what="default ServiceAccount")
        apps.create_namespaced_deployment(ns, {
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
        pods = wait_for(api, "pods", lambda ps: len(ps) == 2 and all(
            p.get("status", {}).get("phase") == "Running" for p in ps.values()), namespace=ns, timeout=60,
            what="2 Running pods")
        for pod in pods.values():
            # the control-plane taint keeps them off k8s-master; the scheduler picks a slave
            assert pod["spec"]["nodeName"] in ("k8s-slave1", "k8s-slave2")
            assert pod["status"]["podIP"].startswith("10.244.")
        events = core.list_namespaced_event(ns, field_selector="reason=Scheduled").items
        assert any(e.source.component == "default-scheduler" or e.reporting_component == "default-scheduler"
                   for e in events)
    finally:
        core.delete_namespace(ns)


def test_certificate_signing_request_is_signed_after_approval(lab, api):
    import base64
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from kubebook.pki import new_key, _name
    key = new_key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name("csr-user", ("csr-group",))) \
        .sign(key, hashes.SHA256())
    certs = client.CertificatesV1Api(api)
    name = "lab-test-csr"
    certs.create_certificate_signing_request({
        "metadata": {"name": name},
        "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client", "expirationSeconds": 3600,
                 "usages": ["client auth"]}})
    try:
        body = certs.read_certificate_signing_request(name)
        body.status.conditions = [client.V1CertificateSigningRequestCondition(
            type="Approved", status="True", reason="LabTest", message="approved by test")]
        certs.replace_certificate_signing_request_approval(name, body)
        done = wait_for(api, "certificatesigningrequests",
                        lambda c: bool(c.get(name, {}).get("status", {}).get("certificate")), timeout=30,
                        what="CSR signed")
        issued = x509.load_pem_x509_certificate(base64.b64decode(done[name]["status"]["certificate"]))
        assert issued.issuer == x509.load_pem_x509_certificate(lab.pki.ca_crt.read_bytes()).subject
        assert issued.subject == csr.subject
    finally:
        certs.delete_certificate_signing_request(name)


def test_second_lab_runs_side_by_side_reports_a_crash_recovers_and_leaves_no_process():
    second = labs.get(f"pytest-side-{os.getpid()}")
    lines = []
    try:
        second.up(nodes=1, timeout=180, log=lines.append)
        # `up` prints each phase's name as it runs it, in order
        printed = []
        for line in lines:
            phase = line.removeprefix("[up] ").split(":")[0]
            if line.startswith("[up] ") and printed[-1:] != [phase]:
                printed.append(phase)
        assert printed == list(labs.PHASE_NAMES)
        pids = {c: p.pid for c, p in second.processes.items()}
        assert set(pids) == set(labs.COMPONENTS)
        os.kill(pids["kwok"], signal.SIGKILL)
        states = {row["component"]: row["state"] for row in _status_after_death(second, pids["kwok"])}
        assert states["kwok"] == "crashed" and states["etcd"] == "running"
        second.up(nodes=1, timeout=120, log=lambda m: None)  # idempotent: restarts only the crashed one
        assert second.processes["etcd"].pid == pids["etcd"]
        assert second.processes["kwok"].pid != pids["kwok"]
        _up_after_another_program_takes_a_port(second)
        _stale_addon_registration_is_dropped_when_the_apiserver_restarts(second)
        pids = {c: p.pid for c, p in second.processes.items()}
    finally:
        second.down(log=lambda m: None)
    for pid in pids.values():
        assert process.start_time(pid) is None, f"pid {pid} still alive after down"
    assert not second.dir.exists()


def _up_after_another_program_takes_a_port(lab):
    """The scheduler's port is taken after `up` checked it and before the scheduler binds:
    `up` must notice the bind failure, choose new ports and still come up."""
    import socket
    lab.stop_component("kube-scheduler")
    taken = lab.ports["kube-scheduler"]
    squatter = socket.socket()

    def take_the_port_once_checked(line):
        if line.startswith("[up] controllers:") and squatter.getsockname()[1] == 0:
            squatter.bind((labs.LOOPBACK, taken))
            squatter.listen()
    try:
        lab.up(nodes=1, timeout=120, log=take_the_port_once_checked)
    finally:
        squatter.close()
    assert lab.ports["kube-scheduler"] != taken
    assert all(row["state"] == "running" for row in lab.status())


def _stale_addon_registration_is_dropped_when_the_apiserver_restarts(lab):
    registrations = client.ApiregistrationV1Api(lab.api_client())
    name = "v1beta1.stale.kubebook.io"
    registrations.create_api_service({
        "metadata": {"name": name, "labels": {"kubebook.io/addon": "test"}},
        "spec": {"group": "stale.kubebook.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                 "versionPriority": 100, "insecureSkipTLSVerify": True,
                 "service": {"namespace": "default", "name": "nowhere", "port": 443}}})
    lab.up(nodes=1, timeout=120, log=lambda m: None)  # apiserver kept running: its add-ons may be alive
    assert name in {s.metadata.name for s in registrations.list_api_service().items}
    lab.stop_component("kube-apiserver")
    lab.up(nodes=1, timeout=120, log=lambda m: None)
    registrations = client.ApiregistrationV1Api(lab.api_client())
    names = {s.metadata.name for s in registrations.list_api_service().items}
    assert name not in names and "v1." in names  # the add-on's registration went, built-in ones stay


def _status_after_death(lab, pid):
    import time
    for _ in range(100):  # SIGKILL is asynchronous; give the kernel a moment to mark it dead
        if process.start_time(pid) is None:
            break
        time.sleep(0.02)
    return lab.status()


def test_cli_lab_status_and_env(lab):
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-m", "kubebook.cli", "lab", "env", "--name", lab.name],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0
    assert f"export KUBECONFIG={lab.kubeconfig}" in out.stdout
    assert f"export ETCDCTL_ENDPOINTS={lab.etcd_endpoint}" in out.stdout
    status = subprocess.run([sys.executable, "-m", "kubebook.cli", "lab", "status", "--name", lab.name],
                            capture_output=True, text=True, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("running") == len(labs.COMPONENTS)


def test_a_lab_that_fails_to_start_leaves_no_process_behind():
    import re
    name = f"pytest-fail-{os.getpid()}"
    lines = []
    with pytest.raises(labs.LabError, match="timeout"):
        with labs.running(name, nodes=1, timeout=0.001, log=lines.append):
            pass
    pids = [int(m) for line in lines for m in re.findall(r"started pid (\d+)", line)]
    assert len(pids) == len(labs.COMPONENTS)  # it did start them, then failed waiting
    assert all(process.start_time(pid) is None for pid in pids)
    assert not labs.get(name).dir.exists(), "the failed lab's directory should be removed"


# ---- an interrupted `up` ----------------------------------------------------------------------

def _processes_of(lab) -> set[int]:
    """Every live process of ``lab``, found without its records: the components run in the lab's
    directory, and add-ons name it on their command line."""
    from pathlib import Path
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(entry / "cwd") == str(lab.dir) or str(lab.dir) in (entry / "cmdline").read_text():
                found.add(int(entry.name))
        except OSError:
            continue  # gone, or a zombie (no cwd)
    return found


def _unrecorded(lab) -> set[int]:
    return _processes_of(lab) - {r.pid for r in lab.refresh().processes.values() if r.alive()}


def _interrupt_when(text):
    def log(line):
        if text in line:
            raise KeyboardInterrupt
    return log


def test_an_interrupted_up_leaves_only_recorded_processes_and_the_next_up_completes():
    lab = labs.get(f"pytest-interrupted-{os.getpid()}")
    # interrupted as each phase starts, and inside one between two starts: every process is recorded
    points = ["[up] apiserver:", "kube-controller-manager started pid", "[up] wait-control-plane:",
              "[up] nodes:", "[up] ready:", "[up] baseline:"]
    try:
        for point in points:
            with pytest.raises(KeyboardInterrupt):
                lab.up(nodes=2, timeout=120, log=_interrupt_when(point))
            assert _processes_of(lab), f"interrupted at {point!r} before anything started"
            assert not _unrecorded(lab), f"interrupted at {point!r}: unrecorded processes"
        lab.up(nodes=2, timeout=120, log=lambda m: None)
        assert lab.is_running()
        nodes = client.CoreV1Api(lab.api_client()).list_node().items
        assert sorted(n.metadata.name for n in nodes) == ["k8s-master", "k8s-slave1"]
        assert (lab.dir / "baseline" / "etcd.db").is_file()
    finally:
        lab.down(log=lambda m: None)
    assert not _processes_of(lab)


def test_a_lab_up_stopped_by_sigterm_says_how_to_resume_and_resumes():
    name = f"pytest-sigterm-{os.getpid()}"
    lab = labs.get(name)
    cli = subprocess.Popen([sys.executable, "-m", "kubebook.cli", "lab", "up", "--name", name, "--nodes", "1"],
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        for line in cli.stderr:
            if line.startswith("[up] controllers:"):
                cli.send_signal(signal.SIGTERM)
                break
        rest = cli.stderr.read()
        assert cli.wait(60) == 130
        assert f"`kubebook lab up --name {name}` carries on" in rest
        assert _processes_of(lab) and not _unrecorded(lab)
        lab.up(nodes=1, timeout=120, log=lambda m: None)
        assert lab.is_running()
    finally:
        cli.kill()
        lab.down(log=lambda m: None)
    assert not _processes_of(lab)


def test_status_shows_the_memory_of_each_component(lab):
    rows = {row["component"]: row for row in lab.status()}
    assert all(rows[c]["rss_mib"] > 1 for c in labs.COMPONENTS)
    usage = {row["process"]: row for row in lab.memory()}
    assert set(labs.COMPONENTS) <= set(usage)
    assert all(0 < row["anon_mib"] <= row["rss_mib"] and 0 < row["pss_mib"] <= row["rss_mib"] for row in usage.values())


def test_start_up_pages_are_released_and_the_component_keeps_serving(lab, tmp_path):
    """On an etcd run from a private copy of its binary: the kernel leaves alone the pages other
    processes map too, and under parallel tests other labs run the very same binaries, so the lab's
    own components would measure what the other labs happen to do (seen: 93.6 MB advised, 0 freed)."""
    import shutil
    import time
    from kubebook.lab import memory
    binary = tmp_path / "etcd"
    shutil.copy(lab.bin("etcd"), binary)
    with open(binary, "rb+") as f:  # clean pages only: the kernel does not page out a dirty file page
        os.fsync(f.fileno())
    client_port = ports.free_loopback_port()
    client_url, peer_url = (f"http://{ports.LOOPBACK}:{port}"
                            for port in (client_port, ports.free_loopback_port(avoid=[client_port])))
    command = [binary, "--data-dir", tmp_path / "data", "--listen-client-urls", client_url,
               "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
               "--initial-advertise-peer-urls", peer_url, "--initial-cluster", f"default={peer_url}"]

    def healthy() -> bool:
        try:
            return b'"health":"true"' in urllib.request.urlopen(f"{client_url}/health", timeout=2).read()
        except OSError:
            return False
    with process.scratch(command, log=tmp_path / "etcd.log") as child:
        deadline = time.monotonic() + 30
        while not healthy():
            assert child.running and time.monotonic() < deadline, process.last_line(tmp_path / "etcd.log")
            time.sleep(0.2)
        before = memory.usage(child.record)["file_mib"]
        advised = memory.release_startup_pages(child.record)
        after = memory.usage(child.record)["file_mib"]
        assert advised > 0 and after < before, (advised, before, after)
        assert memory.usage(child.record)["anon_mib"] > 0, "only the binary's file pages are advised, not the heap"
        assert healthy(), "etcd serves after its start-up pages went"
