"""A new user's access: private key, certificate request, signed certificate, kubeconfig.

Kubernetes has no User object: a user is whoever presents a certificate signed by the
cluster CA, named by its CN, in the groups named by its O fields. Two ways to sign:

- ``signer="csr"`` (default): a CertificateSigningRequest for ``kubernetes.io/kube-apiserver-client``,
  approved, and signed by kube-controller-manager with the cluster CA; ``expiration_seconds``
  bounds its life. Works from anywhere with RBAC rights on CSRs.
- ``signer="ca-key"``: signed here with the CA's own key file, as the course does with
  ``openssl x509 -req -CA ca.crt -CAkey ca.key`` (kubeadm: ``/etc/kubernetes/pki/ca.key``).

Every file is written 0600 (the key, and the kubeconfig that embeds it). Each step is
idempotent: an existing key is kept, an existing valid certificate for the same key and
subject is kept, an existing CSR for the same request is reused.

    user = NewUser(api, "luffy-admin", groups=["admin:luffy"], directory="~/.kube/users/luffy-admin")
    user.add_steps(plan, server=..., ca_pem=...)
"""
from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import kubeconfig as kcfg, pki
from ..errors import KubebookError
from ..plan import Plan
from ..safety import write_private
from ..waits import wait_for
from .access import names
from .certificates import certificates, identity, verify

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBEADM_CA = Path("/etc/kubernetes/pki")
SIGNERS = ("csr", "ca-key")


def csr_pem(key, user: str, groups: list[str]) -> bytes:
    """A PKCS#10 request with CN=user and one O per group (`openssl req -subj "/O=.../CN=..."`)."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
                        + [x509.NameAttribute(NameOID.COMMON_NAME, user)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _cert_matches(cert_pem: bytes, key, user: str, groups: list[str], ca: x509.Certificate | None,
                  min_seconds_left: float = 60) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    same_key = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo) == \
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    left = (cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()
    trusted = ca is None or verify(cert, ca) == "OK"
    return same_key and identity(cert) == (user, list(groups)) and left > min_seconds_left and trusted


@dataclass
class NewUser:
    """One user's files under ``directory``: ``<user>.key``, ``.csr``, ``.crt`` and ``.kubeconfig``."""

    api: client.ApiClient
    name: str
    groups: list[str] | str = field(default_factory=list)
    directory: Path | str = ""
    signer: str = "csr"
    expiration_seconds: int = 86400
    ca_crt: str | Path = KUBEADM_CA / "ca.crt"
    ca_key: str | Path = KUBEADM_CA / "ca.key"
    key_algorithm: str = pki.RSA_2048  # what `openssl genrsa 2048` makes

    def __post_init__(self) -> None:
        if self.signer not in SIGNERS:
            raise KubebookError(f"signer {self.signer!r}: use one of {', '.join(SIGNERS)}")
        if not self.name:
            raise KubebookError("a user needs a name (the certificate's CN)")
        self.groups = names(self.groups)  # a list, or "admin:luffy,dev" as a runbook parameter gives it
        self.directory = Path(self.directory or Path("~/.kube/users") / self.name).expanduser()

    # ---- paths ---------------------------------------------------------------------------------
    def path(self, suffix: str) -> Path:
        return Path(self.directory) / f"{self.name}{suffix}"

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

    # ---- steps ---------------------------------------------------------------------------------
    def _key(self):
        return serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)

    def ensure_key(self) -> str:
        """A private key, 0600; an existing one is kept (re-running must not invalidate certificates)."""
        if self.key_file.is_file():
            self.key_file.chmod(0o600)
            return "kept"
        write_private(self.key_file, pki.private_pem(pki.new_key(self.key_algorithm)))
        return "created"

    def ensure_csr(self) -> str:
        """The certificate request (CN=user, O=groups) next to the key."""
        pem = csr_pem(self._key(), self.name, self.groups)
        if self.csr_file.is_file():
            old = x509.load_pem_x509_csr(self.csr_file.read_bytes())
            if old.subject == x509.load_pem_x509_csr(pem).subject and \
                    old.public_key().public_numbers() == self._key().public_key().public_numbers():
                return "kept"
        self.csr_file.write_bytes(pem)
        return "written"

    def has_certificate(self, ca: x509.Certificate | None = None) -> bool:
        return self.cert_file.is_file() and self.key_file.is_file() and \
            _cert_matches(self.cert_file.read_bytes(), self._key(), self.name, self.groups, ca)

    def submit(self) -> str:
        """Create the CertificateSigningRequest (or reuse it when it carries the same request)."""
        certs = client.CertificatesV1Api(self.api)
        request = base64.b64encode(self.csr_file.read_bytes()).decode()
        body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": self.csr_name, "labels": {"app.kubernetes.io/managed-by": "kubebook"}},
                "spec": {"request": request, "signerName": CLIENT_SIGNER, "usages": ["client auth"],
                         "expirationSeconds": self.expiration_seconds}}
        try:
            certs.create_certificate_signing_request(body)
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = certs.read_certificate_signing_request(self.csr_name)
        if existing.spec.request == request and not _failed_or_denied(existing):
            return "exists"
        certs.delete_certificate_signing_request(self.csr_name)  # an older key's request: replace it
        wait_for(self.api, "certificatesigningrequests", lambda objs: self.csr_name not in objs, timeout=30,
                 what=f"old CSR {self.csr_name} deleted")
        certs.create_certificate_signing_request(body)
        return "replaced"

    def approve(self) -> str:
        """Approve the CSR (what `kubectl certificate approve` does)."""
        certs = client.CertificatesV1Api(self.api)
        csr = certs.read_certificate_signing_request(self.csr_name)
        if any(c.type == "Approved" for c in csr.status.conditions or []):
            return "already approved"
        csr.status.conditions = (csr.status.conditions or []) + [client.V1CertificateSigningRequestCondition(
            type="Approved", status="True", reason="KubebookNewUser", message=f"new user {self.name}")]
        certs.replace_certificate_signing_request_approval(self.csr_name, csr)
        return "approved"

    def fetch(self, *, timeout: float = 60) -> str:
        """Wait (on a watch) until the signer issued the certificate, and save it as ``<user>.crt``."""
        done = wait_for(self.api, "certificatesigningrequests",
                        lambda objs: bool(((objs.get(self.csr_name) or {}).get("status") or {}).get("certificate"))
                        or _failed_or_denied_dict(objs.get(self.csr_name)),
                        field_selector=f"metadata.name={self.csr_name}", timeout=timeout,
                        what=f"CSR {self.csr_name} signed")
        status = done[self.csr_name].get("status") or {}
        if not status.get("certificate"):
            raise KubebookError(f"CSR {self.csr_name} was not signed: {status.get('conditions')}")
        self.cert_file.write_bytes(base64.b64decode(status["certificate"]))
        self.cert_file.chmod(0o644)
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        return f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"

    def sign_with_ca_key(self) -> str:
        """Sign the request here with the CA's key file, as `openssl x509 -req -CA -CAkey` does."""
        ca = pki.KeyPair(x509.load_pem_x509_certificate(Path(self.ca_crt).read_bytes()),
                         serialization.load_pem_private_key(Path(self.ca_key).read_bytes(), password=None))
        request = x509.load_pem_x509_csr(self.csr_file.read_bytes())
        if not request.is_signature_valid:
            raise KubebookError(f"{self.csr_file}: the request's signature does not verify")
        days = max(1, self.expiration_seconds // 86400)
        cert = pki.sign(ca, request.public_key(), self.name, orgs=tuple(self.groups), days=days)
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.cert_file.chmod(0o644)
        return f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC ({days} days)"

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

    def add_steps(self, plan: Plan, *, server: str, ca_pem: bytes, cluster: str, context: str = "",
                  namespace: str = "") -> None:
        """The whole flow as named plan steps (dry run lists them; acting runs them)."""
        ca = x509.load_pem_x509_certificate(ca_pem)
        subject = f"/O={'/O='.join(self.groups)}/CN={self.name}" if self.groups else f"/CN={self.name}"
        plan.step("key", f"create a private key {self.key_file} (0600), or keep the existing one",
                  self.ensure_key, command=f"openssl genrsa -out {self.key_file.name} 2048")
        plan.step("csr", f"write a certificate request for {subject}", self.ensure_csr,
                  command=f'openssl req -new -key {self.key_file.name} -out {self.csr_file.name} -subj "{subject}"')
        already = plan.acting and self.has_certificate(ca)
        if self.signer == "csr":
            for name, what, action, command in (
                    ("submit", f"create CertificateSigningRequest {self.csr_name} (signer {CLIENT_SIGNER}, "
                               f"expirationSeconds {self.expiration_seconds})", self.submit,
                     f"kubectl create -f {self.csr_name}.yaml"),
                    ("approve", f"approve {self.csr_name}", self.approve, f"kubectl certificate approve {self.csr_name}"),
                    ("fetch", f"wait for the signed certificate and save {self.cert_file.name}", self.fetch,
                     f"kubectl get csr {self.csr_name} -o jsonpath='{{.status.certificate}}' | base64 -d")):
                plan.step(name, what, (lambda: "kept the valid certificate already there") if already else action,
                          command=command)
        else:
            plan.step("sign", f"sign with the CA key {self.ca_key}",
                      (lambda: "kept the valid certificate already there") if already else self.sign_with_ca_key,
                      command=f"openssl x509 -req -in {self.csr_file.name} -CA {self.ca_crt} -CAkey {self.ca_key} "
                              f"-out {self.cert_file.name} -days {max(1, self.expiration_seconds // 86400)}")
        plan.step("kubeconfig", f"write {self.kubeconfig} (0600) with cluster {cluster}, user {self.name}",
                  lambda: self.write_kubeconfig(server=server, ca_pem=ca_pem, cluster=cluster, context=context,
                                                namespace=namespace),
                  command=f"kubectl config set-credentials {self.name} --embed-certs=true ...")

    def certificate(self) -> pd.DataFrame:
        """The issued certificate as the apiserver will read it (empty before it exists, e.g. in a dry run)."""
        if not self.kubeconfig.is_file():
            return pd.DataFrame()
        return certificates(self.kubeconfig, ca=self.ca_crt if Path(self.ca_crt).is_file() else "", warn_days=0)

    def files(self) -> pd.DataFrame:
        """The user's files with their modes: the key and the kubeconfig must be 0600."""
        rows = [{"file": str(p), "exists": p.is_file(), "mode": oct(p.stat().st_mode & 0o777) if p.is_file() else ""}
                for p in (self.key_file, self.csr_file, self.cert_file, self.kubeconfig)]
        return pd.DataFrame(rows, columns=["file", "exists", "mode"])


def locations(*, user: str, lab: str = "", directory: str = "", ca_crt: str = "", ca_key: str = "") -> dict:
    """Where the user's files go and which CA files sign (for ``signer="ca-key"``).

    Defaults: ``~/.kube/users/<user>`` and kubeadm's ``/etc/kubernetes/pki/ca.{crt,key}``; with
    ``lab`` (a kubebook lab's name) the lab's own ``users/<user>`` directory and CA files.
    """
    if lab:
        from ..lab import get
        found = get(lab)
        return {"directory": Path(directory) if directory else found.dir / "users" / user,
                "ca_crt": ca_crt or found.pki.root / "ca.crt", "ca_key": ca_key or found.pki.root / "ca.key"}
    return {"directory": Path(directory).expanduser() if directory else Path("~/.kube/users").expanduser() / user,
            "ca_crt": ca_crt or KUBEADM_CA / "ca.crt", "ca_key": ca_key or KUBEADM_CA / "ca.key"}


def _failed_or_denied(csr) -> bool:
    return any(c.type in ("Denied", "Failed") for c in (csr.status.conditions or []))


def _failed_or_denied_dict(csr: dict | None) -> bool:
    return any(c.get("type") in ("Denied", "Failed") for c in ((csr or {}).get("status") or {}).get("conditions") or [])
