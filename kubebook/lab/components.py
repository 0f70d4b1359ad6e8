"""The lab's components as a table: binary, the ports each listens on, its flags, its health check
and the Go runtime settings that keep an idle lab small.

The flags follow kubeadm's static Pod manifests where they apply; what differs (loopback, no
leader election, kwok in place of kubelets) says why next to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from ..ports import LOOPBACK

if TYPE_CHECKING:
    from .lab import Lab

MASTER = "k8s-master"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


@dataclass(frozen=True)
class Health:
    """A GET on loopback that answers 200 once the component is ready."""

    port: str                 # which of the lab's ports
    path: str
    tls: str = ""             # "": plain HTTP; "etcd-client", "admin": verified, with that client
    #                           certificate; "self-signed": a serving certificate made in memory
    expect: bytes = b""       # must be in the body too (etcd answers 200 with {"health":"false"})


@dataclass(frozen=True)
class Component:
    name: str
    binary: str
    ports: tuple[str, ...]                 # names in Lab.ports; a stopped component keeps them
    flags: Callable[["Lab"], list[str]]
    health: Health
    env: Mapping[str, str] = field(default_factory=dict)

    def command(self, lab: "Lab") -> list[str]:
        return [lab.bin(self.binary), *self.flags(lab)]


def _etcd(lab: "Lab") -> list[str]:
    p, pki = lab.ports, lab.pki.root
    peer = f"https://{LOOPBACK}:{p['etcd-peer']}"
    return [f"--name={MASTER}", f"--data-dir={lab.etcd_data_dir}",
            f"--listen-client-urls={lab.etcd_endpoint}", f"--advertise-client-urls={lab.etcd_endpoint}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={MASTER}={peer}", f"--initial-cluster-token={lab.name}",
            f"--listen-metrics-urls=http://{LOOPBACK}:{p['etcd-metrics']}",
            "--client-cert-auth=true", f"--trusted-ca-file={pki}/etcd/ca.crt",
            f"--cert-file={pki}/etcd/server.crt", f"--key-file={pki}/etcd/server.key",
            "--peer-client-cert-auth=true", f"--peer-trusted-ca-file={pki}/etcd/ca.crt",
            f"--peer-cert-file={pki}/etcd/peer.crt", f"--peer-key-file={pki}/etcd/peer.key",
            "--snapshot-count=10000",
            # `lab reset` writes the whole baseline in one transaction, so watchers see it at once
            "--max-txn-ops=10000"]


def _apiserver(lab: "Lab") -> list[str]:
    pki = lab.pki.root
    return [f"--advertise-address={LOOPBACK}", f"--bind-address={LOOPBACK}",
            f"--secure-port={lab.ports['kube-apiserver']}", "--allow-privileged=true",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--client-ca-file={pki}/ca.crt",
            f"--etcd-servers={lab.etcd_endpoint}", f"--etcd-cafile={pki}/etcd/ca.crt",
            f"--etcd-certfile={pki}/apiserver-etcd-client.crt", f"--etcd-keyfile={pki}/apiserver-etcd-client.key",
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            "--kubelet-preferred-address-types=InternalIP",
            f"--proxy-client-cert-file={pki}/front-proxy-client.crt",
            f"--proxy-client-key-file={pki}/front-proxy-client.key",
            "--requestheader-allowed-names=front-proxy-client",
            f"--requestheader-client-ca-file={pki}/front-proxy-ca.crt",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group", "--requestheader-username-headers=X-Remote-User",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki}/sa.pub", f"--service-account-signing-key-file={pki}/sa.key",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            # the `kubernetes` Service cannot point at a loopback address; nothing in the lab needs it
            "--endpoint-reconciler-type=none",
            # API Priority and Fairness shares a busy apiserver between many clients; a lab has one
            # user, and without it (and its API) the idle apiserver holds ~13 MiB less live heap
            "--enable-priority-and-fairness=false", "--runtime-config=flowcontrol.apiserver.k8s.io/v1=false"]


def _serving_and_delegation(lab: "Lab", component: str, conf: str) -> list[str]:
    """Flags kube-controller-manager and kube-scheduler share: their kubeconfig, a loopback serving
    port, authentication and authorization delegated to the apiserver."""
    kubeconfig = lab.dir / conf
    return [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", f"--bind-address={LOOPBACK}",
            f"--secure-port={lab.ports[component]}",
            # one instance per lab: skipping the election avoids waiting out a stale lease on restart
            "--leader-elect=false",
            # the default 20 QPS throttles start-up (a token per controller) and the 5,000-Pod labs
            "--kube-api-qps=100", "--kube-api-burst=200"]


HPA_SYNC_SECONDS = 5  # kube-controller-manager's default is 15
PV_SYNC_SECONDS = 5  # its periodic pass over claims and volumes; the default is 15

# kube-controller-manager's defaults, plus the bootstrap-token controllers kubeadm enables, minus those
# for what a lab cannot have (a cloud, attachable or expandable volumes, DRA devices) or no runbook
# uses (admission-policy status, storage-version migration, cluster trust bundles, pod certificates,
# legacy token cleanup, mirroring hand-made Endpoints): ~10 MiB less for each lab.
CONTROLLERS = ("*", "bootstrap-signer-controller", "token-cleaner-controller",
               *(f"-{c}-controller" for c in (
                   "cloud-node-lifecycle", "node-route", "service-lb", "persistentvolume-attach-detach",
                   "persistentvolume-expander", "ephemeral-volume", "resourceclaim", "device-taint-eviction",
                   "validatingadmissionpolicy-status", "storage-version-migrator", "storageversion-garbage-collector",
                   "kube-apiserver-serving-clustertrustbundle-publisher", "podcertificaterequest-cleaner",
                   "legacy-serviceaccount-token-cleaner", "endpointslice-mirroring",
                   "volumeattributesclass-protection")))


def _controller_manager(lab: "Lab") -> list[str]:
    pki = lab.pki.root
    return [*_serving_and_delegation(lab, "kube-controller-manager", "controller-manager.conf"),
            f"--client-ca-file={pki}/ca.crt", f"--requestheader-client-ca-file={pki}/front-proxy-ca.crt",
            "--allocate-node-cidrs=true", f"--cluster-cidr={CLUSTER_CIDR}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--cluster-name=kubernetes",
            f"--cluster-signing-cert-file={pki}/ca.crt", f"--cluster-signing-key-file={pki}/ca.key",
            f"--controllers={','.join(CONTROLLERS)}", f"--root-ca-file={pki}/ca.crt",
            f"--service-account-private-key-file={pki}/sa.key", "--use-service-account-credentials=true",
            # dynamic provisioning without a storage backend: StorageClasses with provisioner
            # kubernetes.io/host-path get directories under /tmp/hostpath_pv (testing only, as upstream says)
            "--enable-hostpath-provisioner=true",
            # the HPA controller looks every 5 s instead of every 15 s: the autoscaling runbooks show the
            # mechanism (sync, stabilization window, limits), and a trainer's class should not wait for it
            f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_SECONDS}s",
            # and the PV controller's periodic pass every 5 s: a claim or volume that waits for it (a
            # restored volume still naming its old claim, a PV the controller had not seen yet) binds
            # or is released within seconds; measured: a namespace-recovery drill 78 -> 57 s
            f"--pvclaimbinder-sync-period={PV_SYNC_SECONDS}s"]


def _scheduler(lab: "Lab") -> list[str]:
    return _serving_and_delegation(lab, "kube-scheduler", "scheduler.conf")


def _kwok(lab: "Lab") -> list[str]:
    port = lab.ports["kwok"]
    return [f"--kubeconfig={lab.dir / 'kwok.conf'}", f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            f"--node-ip={LOOPBACK}", f"--node-port={port}", f"--server-address={LOOPBACK}:{port}",
            # 0 (the binary's default) means no leases; kwokctl uses 40
            "--node-lease-duration-seconds=40"]


# The Go runtime's memory settings, for labs that sit idle between a class's steps. An idle lab
# allocates well under 1 MB/s, so collecting more often costs nearly nothing there:
# - the small heaps (etcd, controllers, scheduler, kwok) collect at 50 % growth instead of 100 %;
# - the apiserver (~85 MiB live with the demo objects) gets a soft limit that keeps its heap near
#   that size instead of letting it double. Below ~135 MiB it collects without pause (measured at
#   125 MiB: 38 CPU-seconds in 30 idle seconds); a lab whose live heap nears the limit (thousands of
#   objects) collects more often, never fails.
# The code pages the binaries ran only to start are released by `lab up`'s last phase (phases._trim).
SMALL_HEAP = {"GOGC": "50"}
APISERVER_HEAP = {"GOMEMLIMIT": "150MiB"}

COMPONENTS: tuple[Component, ...] = (
    Component("etcd", "etcd", ("etcd", "etcd-peer", "etcd-metrics"), _etcd,
              Health("etcd", "/health", tls="etcd-client", expect=b'"health":"true"'), SMALL_HEAP),
    Component("kube-apiserver", "kube-apiserver", ("kube-apiserver",), _apiserver,
              Health("kube-apiserver", "/readyz", tls="admin"), APISERVER_HEAP),
    Component("kube-controller-manager", "kube-controller-manager", ("kube-controller-manager",),
              _controller_manager, Health("kube-controller-manager", "/healthz", tls="self-signed"), SMALL_HEAP),
    Component("kube-scheduler", "kube-scheduler", ("kube-scheduler",), _scheduler,
              Health("kube-scheduler", "/healthz", tls="self-signed"), SMALL_HEAP),
    Component("kwok", "kwok", ("kwok",), _kwok, Health("kwok", "/healthz"), SMALL_HEAP),
)
BY_NAME = {c.name: c for c in COMPONENTS}
NAMES = tuple(BY_NAME)
PORT_NAMES = tuple(port for c in COMPONENTS for port in c.ports)
