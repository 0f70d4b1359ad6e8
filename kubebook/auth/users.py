"""A new user's access: private key, certificate request, signed certificate, kubeconfig.

Kubernetes has no User object: a user is whoever presents a certificate signed by the
cluster CA, named by its CN, in the groups named by its O fields. Two ways to sign:

- ``signer="csr"`` (default): a CertificateSigningRequest for ``kubernetes.io/kube-apiserver-client``,
  approved, and signed by kube-controller-manager with the cluster CA; ``expiration_seconds``
  bounds its life. Works from anywhere with RBAC rights on CSRs.
- ``signer="ca-key"``: signed here with the CA's own key file, as the course does with
  ``openssl x509 -req -CA ca.crt -CAkey ca.key`` (kubeadm: ``/etc/kubernetes/pki/ca.key``).

    user = NewUser.at(target, "luffy-admin", groups=["admin:luffy"])   # files under ~/.kube/users/luffy-admin
    issue(plan, user)                                                 # key, request, signature, kubeconfig

Every file is written 0600 in a directory kubebook makes 0700; the user's name is one path
component (a Kubernetes name), so no name can place a file outside the directory. Each step is
idempotent: an existing key is kept, a still-valid certificate for the same key and subject is
kept, an existing CSR for the same request is reused. When a CSR is approved but nothing signs it
(a kube-controller-manager without the CA's key), the wait says so within seconds.
"""
from __future__ import annotations

import base64
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import kubeconfig as kcfg, pki
from ..errors import KubebookError
from ..objects import Ref, objects
from ..parameters import Invalid, Name
from ..plan import Plan
from ..safety import write_private
from ..waits import wait_for
from .access import names, require, whoami as whoami_with
from .certificates import certificates, cluster_of, identity, verify

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBEADM_PKI = Path("/etc/kubernetes/pki")
SIGNERS = ("csr", "ca-key")
# kube-controller-manager signs an approved request within moments; this long without a certificate,
# and nothing says it signs, means nothing will
SIGNING_GRACE = 6.0
SIGNING_FLAGS = (("--cluster-signing-cert-file", "--cluster-signing-key-file"),
                 ("--cluster-signing-kube-apiserver-client-cert-file",
                  "--cluster-signing-kube-apiserver-client-key-file"))


def csr_pem(key, user: str, groups: list[str]) -> bytes:
    """A PKCS#10 request with CN=user and one O per group (`openssl req -subj "/O=.../CN=..."`)."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
                        + [x509.NameAttribute(NameOID.COMMON_NAME, user)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _public_der(key_or_cert) -> bytes:
    return key_or_cert.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def _cert_matches(cert_pem: bytes, key, user: str, groups: list[str], ca: x509.Certificate | None,
                  min_seconds_left: float = 60) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    left = (cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()
    trusted = ca is None or verify(cert, ca) == "OK"
    return _public_der(cert) == _public_der(key) and identity(cert) == (user, list(groups)) and \
        left > min_seconds_left and trusted


def _conditions(csr: dict | None) -> dict[str, dict]:
    return {c.get("type"): c for c in ((csr or {}).get("status") or {}).get("conditions") or []}


def _refused(csr: dict | None) -> dict | None:
    conditions = _conditions(csr)
    return conditions.get("Denied") or conditions.get("Failed")


@dataclass
class NewUser:
    """One user's files under ``directory``: ``<user>.key``, ``.csr``, ``.crt`` and ``.kubeconfig``."""

    name: str
    groups: list[str] | str = field(default_factory=list)
    directory: Path | str = ""
    signer: str = "csr"
    expiration_seconds: int = 86400
    ca_crt: str | Path = KUBEADM_PKI / "ca.crt"
    ca_key: str | Path = KUBEADM_PKI / "ca.key"
    key_algorithm: str = pki.RSA_2048  # what `openssl genrsa 2048` makes

    def __post_init__(self) -> None:
        if self.signer not in SIGNERS:
            raise KubebookError(f"signer {self.signer!r}: use one of {', '.join(SIGNERS)}")
        try:  # the name becomes file names, the CSR's and the Role's: one Kubernetes name, never a path
            Name.convert(self.name)
        except Invalid as exc:
            raise KubebookError(f"user {self.name!r}: {exc}") from None
        self.groups = names(self.groups)  # a list, or "admin:luffy,dev"
        self.directory = Path(self.directory or Path("~/.kube/users") / self.name).expanduser().absolute()
        self.ca_crt, self.ca_key = Path(self.ca_crt).expanduser(), Path(self.ca_key).expanduser()
        self._new_key: Any = None

    @classmethod
    def at(cls, target, name: str, *, groups=(), directory: str | Path = "", signer: str = "csr",
           expiration_seconds: int = 86400, ca_crt: str | Path = "", ca_key: str | Path = "",
           key_algorithm: str = pki.RSA_2048) -> "NewUser":
        """The user for ``target`` (a :class:`kubebook.connect.Target`): on a kubebook lab its files go to
        the lab's ``users/<name>`` and the lab's CA signs; elsewhere ``~/.kube/users/<name>`` and kubeadm's
        ``/etc/kubernetes/pki/ca.{crt,key}``. Given paths win."""
        lab = getattr(target, "lab", None)
        base, ca_dir = (lab.dir / "users", lab.pki.root) if lab is not None else \
            (Path.home() / ".kube" / "users", KUBEADM_PKI)
        return cls(name, groups, Path(directory) if directory else base / name, signer, expiration_seconds,
                   ca_crt or ca_dir / "ca.crt", ca_key or ca_dir / "ca.key", key_algorithm)

    # ---- paths ---------------------------------------------------------------------------------
    def path(self, suffix: str) -> Path:
        """``<directory>/<name><suffix>``, refused if it would resolve anywhere but in ``directory``."""
        path = Path(self.directory) / f"{self.name}{suffix}"
        if path.resolve().parent != Path(self.directory).resolve():
            raise KubebookError(f"{path} does not stay in {self.directory}: not written")
        return path

    @property
    def key_file(self) -> Path: return self.path(".key")
    @property
    def csr_file(self) -> Path: return self.path(".csr")
    @property
    def cert_file(self) -> Path: return self.path(".crt")
    @property
    def kubeconfig(self) -> Path: return self.path(".kubeconfig")

    @property
    def csr_name(self) -> str:
        return f"user-{self.name}"

    @property
    def csr_ref(self) -> Ref:
        return Ref("CertificateSigningRequest", self.csr_name)

    @property
    def touches(self) -> list[str]:
        """What a plan issuing this user acts on besides the user: the CSR (cluster-scoped), if one is made."""
        return [self.csr_ref.scope] if self.signer == "csr" else []

    @property
    def subject(self) -> str:
        return "".join(f"/O={g}" for g in self.groups) + f"/CN={self.name}"

    # ---- the key and the request -----------------------------------------------------------------
    def key(self):
        """The user's key: the one on disk, else a new one held in memory until :meth:`write_key`."""
        if self.key_file.is_file():
            return serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        if self._new_key is None:
            self._new_key = pki.new_key(self.key_algorithm)
        return self._new_key

    def write_key(self) -> str:
        """The private key, 0600; an existing one is kept (re-running must not invalidate certificates)."""
        if self.key_file.is_file():
            self.key_file.chmod(0o600)
            return "kept"
        write_private(self.key_file, pki.private_pem(self.key()))
        return "created"

    def request_pem(self) -> bytes:
        """The certificate request (CN=user, O=groups): the one on disk if it still fits the key and subject."""
        if self.csr_file.is_file():
            old = x509.load_pem_x509_csr(self.csr_file.read_bytes())
            if self._fits(old):
                return self.csr_file.read_bytes()
        return csr_pem(self.key(), self.name, self.groups)

    def _fits(self, request: x509.CertificateSigningRequest) -> bool:
        wanted = x509.load_pem_x509_csr(csr_pem(self.key(), self.name, self.groups))
        return request.subject == wanted.subject and _public_der(request) == _public_der(self.key())

    def write_csr(self) -> str:
        pem = self.request_pem()
        if self.csr_file.is_file() and self.csr_file.read_bytes() == pem:
            return "kept"
        write_private(self.csr_file, pem)
        return "written"

    def has_certificate(self, ca: x509.Certificate | None = None) -> bool:
        return self.cert_file.is_file() and self.key_file.is_file() and \
            _cert_matches(self.cert_file.read_bytes(), self.key(), self.name, self.groups, ca)

    # ---- the CSR API -----------------------------------------------------------------------------
    def csr_object(self) -> dict:
        return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": self.csr_name},
                "spec": {"request": base64.b64encode(self.request_pem()).decode(), "signerName": CLIENT_SIGNER,
                         "usages": ["client auth"], "expirationSeconds": self.expiration_seconds}}

    def reusable(self, csr: dict) -> bool:
        """Whether an existing CSR of this name is this user's request (same key and subject), not refused."""
        try:
            request = x509.load_pem_x509_csr(base64.b64decode(csr["spec"]["request"]))
        except (KeyError, ValueError):
            return False
        return self._fits(request) and _refused(csr) is None

    def approve(self, api: client.ApiClient) -> str:
        """Approve the CSR (what `kubectl certificate approve` does)."""
        certs = client.CertificatesV1Api(api)
        csr = certs.read_certificate_signing_request(self.csr_name)
        if any(c.type == "Approved" for c in csr.status.conditions or []):
            return "already approved"
        csr.status.conditions = (csr.status.conditions or []) + [client.V1CertificateSigningRequestCondition(
            type="Approved", status="True", reason="KubebookNewUser", message=f"new user {self.name}")]
        certs.replace_certificate_signing_request_approval(self.csr_name, csr)
        return "approved"

    def fetch(self, api: client.ApiClient, *, timeout: float = 60, target: Any = None) -> str:
        """Wait (on a watch) until the signer issued the certificate, and save it as ``<user>.crt``.

        The wait stops within seconds with the reason when the request was refused, or was approved
        but nothing signs it (:class:`UnsignedDiagnosis`)."""
        done = wait_for(api, "certificatesigningrequests",
                        lambda objs: bool(((objs.get(self.csr_name) or {}).get("status") or {}).get("certificate"))
                        or _refused(objs.get(self.csr_name)) is not None,
                        field_selector=f"metadata.name={self.csr_name}", timeout=timeout,
                        what=f"CSR {self.csr_name} signed", diagnose=UnsignedDiagnosis(api, self.csr_name, target))
        csr = done[self.csr_name]
        refused = _refused(csr)
        if refused is not None:
            raise KubebookError(f"CSR {self.csr_name} was {refused['type'].lower()}: "
                                f"{refused.get('reason', '')} {refused.get('message', '')}".strip())
        write_private(self.cert_file, base64.b64decode(csr["status"]["certificate"]))
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        return f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"

    def sign_with_ca_key(self) -> str:
        """Sign the request here with the CA's key file, as `openssl x509 -req -CA -CAkey` does."""
        ca = pki.KeyPair(x509.load_pem_x509_certificate(self.ca_crt.read_bytes()),
                         serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None))
        request = x509.load_pem_x509_csr(self.request_pem())
        if not request.is_signature_valid:
            raise KubebookError(f"{self.csr_file}: the request's signature does not verify")
        cert = pki.sign(ca, request.public_key(), self.name, orgs=tuple(self.groups), days=self.days)
        write_private(self.cert_file, cert.public_bytes(serialization.Encoding.PEM))
        return f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC ({self.days} days)"

    @property
    def days(self) -> int:
        return max(1, self.expiration_seconds // 86400)

    def write_kubeconfig(self, *, server: str, ca_pem: bytes, cluster: str, context: str = "",
                         namespace: str = "") -> str:
        """A self-contained kubeconfig (CA, certificate and key embedded), 0600."""
        config = kcfg.build(server=server, ca_pem=ca_pem, cert_pem=self.cert_file.read_bytes(),
                            key_pem=self.key_file.read_bytes(), cluster=cluster, user=self.name,
                            context=context or f"{self.name}@{cluster}", namespace=namespace or None)
        if self.kubeconfig.is_file() and kcfg.load(self.kubeconfig) == config:
            self.kubeconfig.chmod(0o600)
            return "unchanged"
        kcfg.write(self.kubeconfig, config)
        return "written"

    # ---- tables ----------------------------------------------------------------------------------
    def certificate(self) -> pd.DataFrame:
        """The issued certificate as the apiserver will read it (empty before it exists, e.g. in a dry run)."""
        if not self.kubeconfig.is_file():
            return pd.DataFrame()
        return certificates(self.kubeconfig, ca=self.ca_crt if self.ca_crt.is_file() else "", warn_days=0)

    def files(self) -> pd.DataFrame:
        """The user's files and their directory with their modes: private ones must be 0600, the directory 0700
        when kubebook made it."""
        paths = (self.directory, self.key_file, self.csr_file, self.cert_file, self.kubeconfig)
        rows = [{"file": str(p), "exists": p.exists(), "mode": oct(p.stat().st_mode & 0o777) if p.exists() else ""}
                for p in paths]
        return pd.DataFrame(rows, columns=["file", "exists", "mode"])


# ---- the whole flow as plan steps ------------------------------------------------------------------
def issue(plan: Plan, user: NewUser, *, cluster_name: str = "", context_name: str = "", namespace: str = "",
          timeout: float = 60.0) -> None:
    """Key, request, signature and kubeconfig as named steps of ``plan`` (a dry run lists them; the
    ``command`` column shows the course's hand-made equivalent of each)."""
    cluster = cluster_of(plan.cluster)
    ca = x509.load_pem_x509_certificate(cluster["ca_pem"])
    plan.step("key", f"create a private key {user.key_file} (0600, directory 0700), or keep the existing one",
              user.write_key, command=f"openssl genrsa -out {user.key_file.name} 2048")
    plan.step("csr", f"write a certificate request for {user.subject}", user.write_csr,
              command=f'openssl req -new -key {user.key_file.name} -out {user.csr_file.name} -subj "{user.subject}"')
    if user.has_certificate(ca):
        plan.step("certificate", f"keep {user.cert_file} (same key and subject, signed by the cluster CA, valid)",
                  lambda: "kept the valid certificate already there")
    elif user.signer == "csr":
        _through_the_csr_api(plan, user, timeout)
    else:
        plan.step("sign", f"sign with the CA key {user.ca_key}", user.sign_with_ca_key,
                  command=f"openssl x509 -req -in {user.csr_file.name} -CA {user.ca_crt} -CAkey {user.ca_key} "
                          f"-out {user.cert_file.name} -days {user.days}")
    name = cluster_name or cluster["name"]
    plan.step("kubeconfig", f"write {user.kubeconfig} (0600) with cluster {name}, user {user.name}",
              lambda: user.write_kubeconfig(server=cluster["server"], ca_pem=cluster["ca_pem"], cluster=name,
                                            context=context_name, namespace=namespace),
              command=f"kubectl config set-credentials {user.name} --embed-certs=true ...")


def _through_the_csr_api(plan: Plan, user: NewUser, timeout: float) -> None:
    ref = user.csr_ref
    csrs = "certificatesigningrequests.certificates.k8s.io"
    if require(plan, "submit", [("get", csrs, "", ref.name), ("create", csrs, "", ""), ("list", csrs, "", ""),
                                ("watch", csrs, "", ""),
                                ("update", f"{csrs}/approval", "", ref.name),
                                ("approve", "signers.certificates.k8s.io", "", CLIENT_SIGNER)]):
        return  # a dry run: the table says where the run would stop
    existing = objects(plan.api).get(ref)
    if existing is not None and not user.reusable(existing):  # an older key's request, or a refused one
        plan.delete(ref, step="stale-csr", existing="backup", command=f"kubectl delete csr {ref.name}")
    plan.create(user.csr_object(), step="submit", command=f"kubectl create -f {ref.name}.yaml")
    plan.step("approve", f"approve {ref.name}", lambda: user.approve(plan.api),
              command=f"kubectl certificate approve {ref.name}", touches=[ref])
    plan.wait("signed", f"a signer issues the certificate of {ref.name}, saved as {user.cert_file.name}",
              lambda: user.fetch(plan.api, timeout=timeout, target=plan.cluster))


def whoami(user: NewUser) -> pd.DataFrame:
    """Who the apiserver takes the new user to be, with the new kubeconfig (nothing before it exists)."""
    from ..connect import api_client
    if not user.kubeconfig.is_file():
        return pd.DataFrame([{"status": "", "user": "", "groups": "",
                              "message": f"no kubeconfig at {user.kubeconfig} yet (dry run)"}])
    return whoami_with(api_client(user.kubeconfig))


# ---- why an approved request stays unsigned -----------------------------------------------------------
def _flag_values(command: list[str]) -> dict[str, str]:
    values, args = {}, list(command)
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            name, sep, value = arg.partition("=")
            values[name] = value if sep else (args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--")
                                              else "")
    return values


def signs_client_certificates(command: list[str]) -> bool:
    """Whether a kube-controller-manager started with ``command`` signs ``kubernetes.io/kube-apiserver-client``
    requests: it needs the CA's certificate and key, for every signer or for that one."""
    flags = _flag_values(command)
    return any(flags.get(cert) and flags.get(key) for cert, key in SIGNING_FLAGS)


def signing_evidence(api: client.ApiClient, target: Any = None) -> tuple[bool | None, str]:
    """Whether kube-controller-manager signs client certificates, and the evidence: the lab's recorded
    process, or kubeadm's static Pod in kube-system. ``(None, "")`` when nothing here tells."""
    lab = getattr(target, "lab", None)
    if lab is not None:
        process = lab.refresh().processes.get("kube-controller-manager")  # as recorded now, not at connect time
        if process is None or not process.alive():
            return False, f"the lab's kube-controller-manager is not running (kubebook lab up --name {lab.name})"
        try:
            command = [a.decode() for a in Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            return None, ""
        signs = signs_client_certificates(command)
        return signs, f"the lab's kube-controller-manager (pid {process.pid}) runs " + \
            ("with" if signs else "without") + " --cluster-signing-cert-file/--cluster-signing-key-file"
    try:
        pods = client.CoreV1Api(api).list_namespaced_pod("kube-system",
                                                         label_selector="component=kube-controller-manager").items
    except ApiException:
        return None, ""
    for pod in pods:
        container = (pod.spec.containers or [None])[0]
        if container is None:
            continue
        if pod.status.phase != "Running":
            return False, f"Pod kube-system/{pod.metadata.name} (kube-controller-manager) is {pod.status.phase}"
        signs = signs_client_certificates([*(container.command or []), *(container.args or [])])
        return signs, f"Pod kube-system/{pod.metadata.name} runs kube-controller-manager " + \
            ("with" if signs else "without") + " --cluster-signing-cert-file/--cluster-signing-key-file"
    return None, ""


class UnsignedDiagnosis:
    """Why a CSR wait cannot succeed, for :func:`kubebook.waits.wait_for`'s ``diagnose``: refused, or
    approved with nothing to sign it. Asked every 2 s; answers at once when the controller-manager is
    known not to sign, after :data:`SIGNING_GRACE` seconds of an approved request left unsigned when
    nothing tells, and after three times that when it should be signing."""

    def __init__(self, api: client.ApiClient, name: str, target: Any = None, *, grace: float = SIGNING_GRACE,
                 evidence: tuple[bool | None, str] | None = None):
        self.name, self.grace, self.started = name, grace, time.monotonic()
        self.signs, self.evidence = evidence if evidence is not None else signing_evidence(api, target)

    def __call__(self, objs: dict[str, dict]) -> str | None:
        csr = objs.get(self.name)
        if csr is None or ((csr.get("status") or {}).get("certificate")):
            return None
        refused = _refused(csr)
        if refused is not None:
            return f"CSR {self.name} was {refused['type'].lower()}: {refused.get('message') or refused.get('reason')}"
        if "Approved" not in _conditions(csr):
            return None
        waited = time.monotonic() - self.started
        patience = 0 if self.signs is False else self.grace * (3 if self.signs else 1)
        if waited < patience:
            return None
        why = f" ({self.evidence})" if self.evidence else ""
        fix = "re-run with signer=ca-key (it signs here with the CA key file), or start kube-controller-manager " \
              "with the CA's certificate and key"
        if self.signs:
            return f"CSR {self.name} was approved {waited:.0f}s ago and is still not signed although " \
                   f"kube-controller-manager has signing files{why}: see its log for {CLIENT_SIGNER}; or {fix}"
        return f"CSR {self.name} was approved but no signer issued a certificate for {CLIENT_SIGNER}: " \
               f"kube-controller-manager is not signing{why}; {fix}"
