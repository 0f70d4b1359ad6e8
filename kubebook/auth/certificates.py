"""Who a kubeconfig says you are: its contexts, and the client certificates inside it.

The apiserver takes the certificate's CN as the user name and each O as a group, after
checking the certificate against ``--client-ca-file``. :func:`certificates` reads both out
of a kubeconfig (embedded ``*-data`` or referenced files) and verifies each certificate
against the cluster CA, as ``openssl verify -CAfile ca.crt`` does in the course.
Private keys are never read here.
"""
from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path

import pandas as pd
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .. import kubeconfig as kcfg
from ..connect import IN_CLUSTER_TOKEN
from ..errors import KubebookError
from ..show import named

WARN_DAYS = 30
IN_CLUSTER_CA = IN_CLUSTER_TOKEN.parent / "ca.crt"
MASTERS = "system:masters"


def kubeconfig_file(source) -> Path:
    """The kubeconfig file to read: a :class:`kubebook.connect.Target`'s (resolved by its one policy) or
    a path. It must exist; a target that authenticates in a Pod has none."""
    path = source if isinstance(source, (str, os.PathLike)) else getattr(source, "kubeconfig", None)
    if not path:
        raise KubebookError("this target authenticates in-cluster (a ServiceAccount token): there is no kubeconfig "
                            "file to read (pass kubeconfig=... to inspect one)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise KubebookError(f"kubeconfig not found: {path}")
    return path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _data_or_file(entry: dict, key: str, base: Path) -> tuple[bytes | None, str]:
    """``<key>-data`` (base64) or ``<key>`` (a path, relative to the kubeconfig's directory)."""
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"]), "embedded"
    if entry.get(key):
        path = Path(entry[key]).expanduser()
        path = path if path.is_absolute() else base / path
        return (path.read_bytes() if path.is_file() else None), str(path)
    return None, ""


def _by_name(config: dict, section: str, field: str) -> dict[str, dict]:
    return {item["name"]: item.get(field) or {} for item in config.get(section) or []}


def auth_method(user: dict) -> str:
    """How a kubeconfig user authenticates, named without revealing anything."""
    if user.get("client-certificate-data") or user.get("client-certificate"):
        return "client certificate"
    if user.get("token") or user.get("tokenFile"):
        return "bearer token"
    if user.get("exec"):
        return f"exec plugin ({Path(str(user['exec'].get('command', ''))).name})"
    if user.get("auth-provider"):
        return f"auth provider ({user['auth-provider'].get('name', '')})"
    if user.get("username"):
        return "basic auth"
    return "none"


def contexts(source) -> pd.DataFrame:
    """One row per context: its cluster and server, its user and how that user authenticates."""
    config = kcfg.load(kubeconfig_file(source))
    clusters, users = _by_name(config, "clusters", "cluster"), _by_name(config, "users", "user")
    rows = []
    for item in config.get("contexts") or []:
        ctx = item.get("context") or {}
        cluster, user = clusters.get(ctx.get("cluster"), {}), users.get(ctx.get("user"), {})
        rows.append({"current": "*" if item["name"] == config.get("current-context") else "",
                     "context": item["name"], "cluster": ctx.get("cluster", ""), "server": cluster.get("server", ""),
                     "user": ctx.get("user", ""), "authenticates with": auth_method(user),
                     "namespace": ctx.get("namespace", "")})
    return pd.DataFrame(rows, columns=["current", "context", "cluster", "server", "user", "authenticates with",
                                       "namespace"])


def identity(cert: x509.Certificate) -> tuple[str, list[str]]:
    """(user, groups) as the apiserver reads them from a client certificate: CN and every O."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else ""), [str(o.value) for o in orgs]


def verify(cert: x509.Certificate, ca: x509.Certificate, *, at: dt.datetime | None = None) -> str:
    """"OK", or why ``ca`` would not accept ``cert`` as a client certificate (what `openssl verify` checks)."""
    at = at or _now()
    if cert.issuer != ca.subject:
        return f"issued by {cert.issuer.rfc4514_string()}, not by {ca.subject.rfc4514_string()}"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError) as exc:
        return f"signature does not verify with the CA: {exc}"
    except Exception as exc:  # cryptography.exceptions.InvalidSignature
        return f"signature does not verify with the CA ({type(exc).__name__})"
    if at < cert.not_valid_before_utc:
        return "not yet valid"
    if at > cert.not_valid_after_utc:
        return "expired"
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            return "no clientAuth extended key usage"
    except x509.ExtensionNotFound:
        pass  # no EKU extension: every usage is allowed
    return "OK"


def describe(cert: x509.Certificate, *, ca: x509.Certificate | None = None, warn_days: int = WARN_DAYS,
             at: dt.datetime | None = None) -> dict:
    """The fields of `openssl x509 -text` that matter for access, and what they mean to the apiserver."""
    at = at or _now()
    user, groups = identity(cert)
    left = (cert.not_valid_after_utc - at).total_seconds() / 86400
    verified = verify(cert, ca, at=at) if ca is not None else "no CA to check against"
    if verified != "OK":
        status = verified
    elif left < warn_days:
        status = f"WARNING: expires in {left:.0f} days"
    else:
        status = "ok"
    return {"user (CN)": user, "groups (O)": ", ".join(groups), "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"), "key": _key_kind(cert),
            "not before": cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M"),
            "not after": cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M"), "days left": round(left, 1),
            "verify against CA": verified, "status": status}


def _key_kind(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__


def load_ca(path: str | Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).expanduser().read_bytes())


def certificates(source, *, ca: str | Path = "", warn_days: int = WARN_DAYS) -> pd.DataFrame:
    """Every client certificate in the kubeconfig of ``source`` (a Target or a path; one row per user).

    Each is verified against ``ca`` if given (e.g. ``/etc/kubernetes/pki/ca.crt``), else against
    the certificate-authority of the cluster its context uses. Users without a certificate
    (tokens, exec plugins) are listed with how they authenticate instead.
    """
    path = kubeconfig_file(source)
    config, base = kcfg.load(path), path.parent
    clusters = _by_name(config, "clusters", "cluster")
    cluster_of_user = {}
    for item in config.get("contexts") or []:
        ctx = item.get("context") or {}
        cluster_of_user.setdefault(ctx.get("user"), ctx.get("cluster"))
    explicit_ca = load_ca(ca) if ca else None
    rows = []
    for name, user in _by_name(config, "users", "user").items():
        pem, source = _data_or_file(user, "client-certificate", base)
        row = {"user entry": name, "certificate": source or "-"}
        if pem is None:
            rows.append({**row, "status": f"no client certificate ({auth_method(user)})"
                         if not source else f"certificate file missing: {source}"})
            continue
        cluster = cluster_of_user.get(name)
        ca_pem, ca_source = _data_or_file(clusters.get(cluster, {}), "certificate-authority", base)
        ca_cert = explicit_ca or (x509.load_pem_x509_certificate(ca_pem) if ca_pem else None)
        row["checked against"] = str(ca) if explicit_ca else (f"cluster {cluster} CA ({ca_source})" if ca_pem else "-")
        rows.append({**row, **describe(x509.load_pem_x509_certificate(pem), ca=ca_cert, warn_days=warn_days)})
    columns = ["user entry", "user (CN)", "groups (O)", "issuer", "not before", "not after", "days left",
               "verify against CA", "status", "key", "serial", "certificate", "checked against"]
    return pd.DataFrame(rows, columns=columns).astype(object).fillna("")


def needing_attention(certs: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`certificates` whose status is not ``ok``: expiring, expired, not signed by the CA,
    or no certificate to check."""
    return certs[certs["status"] != "ok"].reset_index(drop=True)


def cluster_cas(source) -> pd.DataFrame:
    """Each cluster's CA certificate (what the client trusts the apiserver with): subject and validity."""
    path = kubeconfig_file(source)
    config = kcfg.load(path)
    rows = []
    for name, cluster in _by_name(config, "clusters", "cluster").items():
        pem, source = _data_or_file(cluster, "certificate-authority", path.parent)
        if pem is None:
            rows.append({"cluster": name, "server": cluster.get("server", ""), "CA": "system trust store"
                         if not cluster.get("insecure-skip-tls-verify") else "INSECURE: TLS not verified"})
            continue
        cert = x509.load_pem_x509_certificate(pem)
        rows.append({"cluster": name, "server": cluster.get("server", ""), "CA": cert.subject.rfc4514_string(),
                     "source": source, "not after": cert.not_valid_after_utc.strftime("%Y-%m-%d"),
                     "days left": round((cert.not_valid_after_utc - _now()).total_seconds() / 86400)})
    return pd.DataFrame(rows, columns=["cluster", "server", "CA", "source", "not after", "days left"]).astype(object).fillna("")


def system_masters(source) -> pd.DataFrame:
    """Client certificates in the kubeconfig whose groups include ``system:masters``: admins no RBAC
    change can demote. A target that authenticates in a Pod (a ServiceAccount token) has none."""
    columns = ["user entry", "user (CN)", "groups (O)", "not after", "days left"]
    if not isinstance(source, (str, os.PathLike)) and getattr(source, "kubeconfig", None) is None:
        return named(pd.DataFrame(columns=columns), "system-masters-certificates", key=["user entry"],
                     volatile=["days left"])
    certs = certificates(source)
    groups = certs["groups (O)"].astype(str).str.split(", ")
    masters = certs[groups.map(lambda g: MASTERS in g)][columns].reset_index(drop=True)
    return named(masters, "system-masters-certificates", key=["user entry"], volatile=["days left"])


def cluster_of(target) -> dict:
    """The cluster ``target`` (a :class:`kubebook.connect.Target`) talks to: its name, server and CA
    certificate (PEM), for a new kubeconfig that reaches the same apiserver and trusts the same CA."""
    if getattr(target, "kubeconfig", None) is None:  # in a Pod: the ServiceAccount's CA
        if not IN_CLUSTER_CA.is_file():
            raise KubebookError(f"in-cluster, but {IN_CLUSTER_CA} is missing: no CA to embed")
        return {"name": "in-cluster", "server": target.api.configuration.host, "ca_pem": IN_CLUSTER_CA.read_bytes()}
    path = kubeconfig_file(target)
    config = kcfg.load(path)
    name = target.context or config.get("current-context", "")
    ctx = next((c.get("context") or {} for c in config.get("contexts") or [] if c["name"] == name), None)
    if ctx is None:
        raise KubebookError(f"{path}: no context {name!r}")
    cluster = _by_name(config, "clusters", "cluster").get(ctx.get("cluster"), {})
    ca_pem, _ = _data_or_file(cluster, "certificate-authority", path.parent)
    if ca_pem is None:
        raise KubebookError(f"{path}: cluster {ctx.get('cluster')!r} has no certificate-authority to embed "
                            f"(a kubeconfig that skips TLS verification is not copied)")
    return {"name": ctx.get("cluster", ""), "server": cluster.get("server", ""), "ca_pem": ca_pem}
