"""Days left on every certificate a cluster shows: read-only, from every place a client can look.

- the kubeconfig: each cluster's CA and each user's client certificate (in a Pod: the
  ServiceAccount's CA file);
- the apiserver's serving certificate, as a TLS handshake to the server address returns it
  (read without verifying it, so an expired one is still reported, not refused);
- the CA bundles the cluster publishes: the ``extension-apiserver-authentication`` ConfigMap
  (client CA and front-proxy CA), each APIService's and admission webhook's ``caBundle``;
- certificates issued through the CSR API (``status.certificate`` of each CSR);
- ``*.crt`` files under a pki directory (kubeadm's ``/etc/kubernetes/pki`` on a control-plane node).

Private keys are never read. :func:`collect` returns one table, ``certificates``, keyed by
source and subject so ``kubebook diff`` reports a certificate whose expiry moved.
"""
from __future__ import annotations

import base64
import datetime as dt
import re
import ssl
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
from cryptography import x509
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError
from ..show import named
from . import certificates as kcerts

COLUMNS = ["source", "subject", "names", "issuer", "not after", "days left", "status", "serial"]
SERVICE_ACCOUNT_CA = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
KUBEADM_PKI = "/etc/kubernetes/pki"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class CertificatesExpiring(KubebookError):
    """A certificate has fewer days left than the run allows."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pems(data: bytes) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(m.group(0)) for m in _PEM.finditer(data)]


def _names(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    return ",".join([*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))])


def status_of(days_left: float, warn_days: int) -> str:
    """Worded so that it changes only when a threshold is crossed (a diff then means something)."""
    if days_left < 0:
        return "EXPIRED"
    if days_left < warn_days:
        return f"expires within {warn_days} days"
    return "ok"


def row(source: str, cert: x509.Certificate, *, warn_days: int, at: dt.datetime | None = None) -> dict:
    left = (cert.not_valid_after_utc - (at or _now())).total_seconds() / 86400
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {"source": source, "subject": str(cn[0].value) if cn else cert.subject.rfc4514_string(),
            "names": _names(cert), "issuer": cert.issuer.rfc4514_string(),
            "not after": cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M"), "days left": round(left, 1),
            "status": status_of(left, warn_days), "serial": format(cert.serial_number, "x")}


def _problem(source: str, why: str) -> dict:
    return {"source": source, "subject": "", "names": "", "issuer": "", "not after": "", "days left": None,
            "status": f"not read: {why}", "serial": ""}


# ---- each place ------------------------------------------------------------------------------
def from_kubeconfig(kubeconfig: str = "", *, warn_days: int) -> list[dict]:
    """CA and client certificates of the kubeconfig (the target's, resolved by kubebook.connect); in a Pod
    without one, the ServiceAccount's CA."""
    if not kubeconfig:
        if SERVICE_ACCOUNT_CA.is_file():
            return [row("in-cluster CA", c, warn_days=warn_days) for c in _pems(SERVICE_ACCOUNT_CA.read_bytes())]
        return [_problem("kubeconfig", "none: the target authenticates in-cluster")]
    path = Path(kubeconfig)
    if not path.is_file():
        return [_problem(f"kubeconfig {path}", "file not found")]
    from .. import kubeconfig as kcfg
    config, rows = kcfg.load(path), []
    for item in config.get("clusters") or []:
        pem, _ = kcerts._data_or_file(item.get("cluster") or {}, "certificate-authority", path.parent)
        rows += [row(f"kubeconfig CA of cluster {item['name']}", c, warn_days=warn_days) for c in _pems(pem or b"")]
    for item in config.get("users") or []:
        pem, _ = kcerts._data_or_file(item.get("user") or {}, "client-certificate", path.parent)
        rows += [row(f"kubeconfig user {item['name']}", c, warn_days=warn_days) for c in _pems(pem or b"")]
    return rows


def serving(server: str, *, warn_days: int, timeout: float = 10.0) -> list[dict]:
    """The certificate the server at ``server`` (https://host:port) presents in a TLS handshake."""
    url = urlparse(server)
    source = f"serving certificate of {url.hostname}:{url.port or 443}"
    try:
        pem = ssl.get_server_certificate((url.hostname, url.port or 443), timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        return [_problem(source, f"TLS handshake failed ({type(exc).__name__})")]
    return [row(source, c, warn_days=warn_days) for c in _pems(pem.encode())]


def published_bundles(api: client.ApiClient, *, warn_days: int) -> list[dict]:
    """CA bundles the cluster publishes: client and front-proxy CAs, APIService and webhook caBundles."""
    rows: list[dict] = []
    try:
        cm = client.CoreV1Api(api).read_namespaced_config_map("extension-apiserver-authentication", "kube-system")
        for key in ("client-ca-file", "requestheader-client-ca-file"):
            rows += [row(f"kube-system/extension-apiserver-authentication {key}", c, warn_days=warn_days)
                     for c in _pems((cm.data or {}).get(key, "").encode())]
    except ApiException as exc:
        _raise_unless_missing(exc, "ConfigMap kube-system/extension-apiserver-authentication")
    for service in client.ApiregistrationV1Api(api).list_api_service().items:
        if service.spec.ca_bundle:
            rows += [row(f"APIService {service.metadata.name}", c, warn_days=warn_days)
                     for c in _pems(base64.b64decode(service.spec.ca_bundle))]
    admission = client.AdmissionregistrationV1Api(api)
    for kind, items in (("ValidatingWebhookConfiguration", admission.list_validating_webhook_configuration().items),
                        ("MutatingWebhookConfiguration", admission.list_mutating_webhook_configuration().items)):
        for config in items:
            for hook in config.webhooks or []:
                bundle = hook.client_config.ca_bundle if hook.client_config else None
                if bundle:
                    rows += [row(f"{kind} {config.metadata.name} webhook {hook.name}", c, warn_days=warn_days)
                             for c in _pems(base64.b64decode(bundle))]
    return rows


def issued_by_csr(api: client.ApiClient, *, warn_days: int) -> list[dict]:
    """Certificates handed out through the CSR API (users, kubelets), one row per issued CSR."""
    rows = []
    for csr in client.CertificatesV1Api(api).list_certificate_signing_request().items:
        if csr.status and csr.status.certificate:
            rows += [row(f"CSR {csr.metadata.name} ({csr.spec.signer_name})", c, warn_days=warn_days)
                     for c in _pems(base64.b64decode(csr.status.certificate))]
    return rows


def pki_files(directory: str, *, warn_days: int) -> list[dict]:
    """Every ``*.crt`` under ``directory`` ("" or missing: none, said so in one row)."""
    if not directory:
        return []
    root = Path(directory).expanduser()
    if not root.is_dir():
        return [_problem(f"pki directory {root}", "not found on this machine (run on a control-plane node)")]
    rows = []
    for path in sorted(root.rglob("*.crt")):
        try:
            rows += [row(f"file {path}", c, warn_days=warn_days) for c in _pems(path.read_bytes())]
        except (OSError, ValueError) as exc:
            rows.append(_problem(f"file {path}", type(exc).__name__))
    return rows


def _raise_unless_missing(exc: ApiException, what: str) -> None:
    if exc.status != 404:
        raise exc


# ---- the runbook's tables ---------------------------------------------------------------------
def collect(target, *, pki_dir: str = KUBEADM_PKI, warn_days: int = 30) -> pd.DataFrame:
    """Every certificate from every place ``target`` (a :class:`kubebook.connect.Target`) shows, soonest
    expiry first: the ``certificates`` table. On a kubebook lab its own pki directory replaces ``pki_dir``."""
    api = target.api
    rows = from_kubeconfig(str(target.kubeconfig or ""), warn_days=warn_days)
    rows += serving(api.configuration.host, warn_days=warn_days)
    rows += published_bundles(api, warn_days=warn_days)
    rows += issued_by_csr(api, warn_days=warn_days)
    rows += pki_files(str(target.lab.pki.root) if target.lab is not None else pki_dir, warn_days=warn_days)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table = table.sort_values("days left", na_position="first", kind="stable").reset_index(drop=True)
    return named(table.astype(object).fillna(""), "certificates", key=["source", "subject"], volatile=["days left"])


def by_status(table: pd.DataFrame) -> pd.DataFrame:
    """How many certificates are ok, expiring, expired or unreadable, and the soonest expiry of each group."""
    groups = table.assign(group=table["status"].str.split(":").str[0])
    out = groups.groupby("group", sort=False).agg(certificates=("source", "count"), soonest=("not after", "min"))
    return out.reset_index().rename(columns={"group": "status"})


def check(table: pd.DataFrame, fail_within_days: int) -> str:
    """Raise :class:`CertificatesExpiring` if a certificate has fewer than ``fail_within_days`` left (0: never)."""
    if fail_within_days < 0:
        raise KubebookError("fail_within_days must be 0 (never fail) or more")
    days = pd.to_numeric(table["days left"], errors="coerce")
    soon = table[days < fail_within_days] if fail_within_days else table.iloc[0:0]
    if len(soon):
        first = soon.iloc[0]
        raise CertificatesExpiring(f"{len(soon)} certificate(s) with fewer than {fail_within_days} days left, "
                                   f"the first: {first['subject']} ({first['source']}) on {first['not after']}")
    return f"no certificate expires within {fail_within_days} days" if fail_within_days else "not checked (0)"
