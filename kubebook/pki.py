"""Certificates and keys laid out as kubeadm does, generated with ``cryptography``.

kubeadm keeps three CAs (cluster, etcd, front proxy) and a service-account key pair
under ``/etc/kubernetes/pki``; the lab builds the same tree in its own directory so
the runbooks' paths and the course's commands mean the same on both.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .safety import write_private

CA_DAYS = 3650      # kubeadm: 10 years for CAs
CERT_DAYS = 365     # kubeadm: 1 year for leaf certificates
# kubeadm's two choices (ClusterConfiguration.encryptionAlgorithm). The lab uses ECDSA-P256:
# generating its ~20 keys takes milliseconds instead of seconds with RSA-2048.
RSA_2048 = "RSA-2048"
ECDSA_P256 = "ECDSA-P256"

SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)
CLIENT = (ExtendedKeyUsageOID.CLIENT_AUTH,)
BOTH = SERVER + CLIENT


@dataclass(frozen=True)
class KeyPair:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return private_pem(self.key)


def private_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def new_key(algorithm: str = RSA_2048) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if algorithm == ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == RSA_2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key algorithm {algorithm!r}: {RSA_2048} or {ECDSA_P256}")


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    # backdate a little so a clock a few minutes behind does not reject a fresh certificate
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)


def _builder(subject: x509.Name, issuer: x509.Name, public_key, *, days: int, ca: bool) -> x509.CertificateBuilder:
    """What every certificate here shares: validity, basic constraints, key usage."""
    usage = x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=ca, content_commitment=False,
                          data_encipherment=False, key_agreement=False, crl_sign=False, encipher_only=False,
                          decipher_only=False)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now()).not_valid_after(_now() + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage, critical=True))


def new_ca(cn: str, algorithm: str = RSA_2048) -> KeyPair:
    key = new_key(algorithm)
    cert = (_builder(_name(cn), _name(cn), key.public_key(), days=CA_DAYS, ca=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return KeyPair(cert, key)


def sign(ca: KeyPair, public_key, cn: str, *, orgs: tuple[str, ...] = (), usages=CLIENT,
         dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), days: int = CERT_DAYS) -> x509.Certificate:
    """Sign a leaf certificate for ``public_key`` with ``ca`` (what `openssl x509 -req -CA` does)."""
    builder = (_builder(_name(cn, orgs), ca.cert.subject, public_key, days=days, ca=False)
               .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if dns or ips:
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def new_leaf(ca: KeyPair, cn: str, *, algorithm: str = RSA_2048, **kwargs) -> KeyPair:
    key = new_key(algorithm)
    return KeyPair(sign(ca, key.public_key(), cn, **kwargs), key)


def save(pair: KeyPair, base: Path) -> None:
    """Write ``base.crt`` (0644) and ``base.key`` (0600)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    write_private(base.with_suffix(".key"), pair.key_pem)
    crt = base.with_suffix(".crt")
    crt.write_bytes(pair.cert_pem)
    crt.chmod(0o644)


def load(base: Path) -> KeyPair:
    cert = x509.load_pem_x509_certificate(base.with_suffix(".crt").read_bytes())
    key = serialization.load_pem_private_key(base.with_suffix(".key").read_bytes(), password=None)
    return KeyPair(cert, key)  # type: ignore[arg-type]


def _exists(base: Path) -> bool:
    return base.with_suffix(".crt").is_file() and base.with_suffix(".key").is_file()


def ensure_ca(base: Path, cn: str, algorithm: str = RSA_2048) -> KeyPair:
    if _exists(base):
        return load(base)
    pair = new_ca(cn, algorithm)
    save(pair, base)
    return pair


def ensure_leaf(base: Path, ca: KeyPair, cn: str, **kwargs) -> KeyPair:
    """Create the certificate unless one signed by ``ca`` is already there (idempotent)."""
    if _exists(base):
        pair = load(base)
        if pair.cert.issuer == ca.cert.subject:
            return pair
    pair = new_leaf(ca, cn, **kwargs)
    save(pair, base)
    return pair


@dataclass(frozen=True)
class ClusterPKI:
    """kubeadm's /etc/kubernetes/pki tree, rooted anywhere."""

    root: Path
    algorithm: str = ECDSA_P256

    def path(self, name: str) -> Path:
        return self.root / name

    # The paths runbooks pass to clients, named as kubeadm names them.
    @property
    def ca_crt(self) -> Path: return self.root / "ca.crt"
    @property
    def etcd_ca_crt(self) -> Path: return self.root / "etcd" / "ca.crt"
    @property
    def etcd_healthcheck(self) -> Path: return self.root / "etcd" / "healthcheck-client"

    def ensure(self, *, node_name: str, service_ip: str = "10.96.0.1") -> None:
        """Create every CA, certificate and key kubeadm would, skipping those already present."""
        r, alg = self.root, self.algorithm
        ca = ensure_ca(r / "ca", "kubernetes", alg)
        ensure_leaf(r / "apiserver", ca, "kube-apiserver", usages=SERVER,
                    dns=("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                         "kubernetes.default.svc.cluster.local", node_name, "localhost"),
                    ips=(service_ip, "127.0.0.1"), algorithm=alg)
        ensure_leaf(r / "apiserver-kubelet-client", ca, "kube-apiserver-kubelet-client",
                    orgs=("kubeadm:cluster-admins",), algorithm=alg)
        front = ensure_ca(r / "front-proxy-ca", "front-proxy-ca", alg)
        ensure_leaf(r / "front-proxy-client", front, "front-proxy-client", algorithm=alg)
        etcd_ca = ensure_ca(r / "etcd" / "ca", "etcd-ca", alg)
        etcd_sans = dict(dns=("localhost", node_name), ips=("127.0.0.1", "::1"), algorithm=alg)
        ensure_leaf(r / "etcd" / "server", etcd_ca, node_name, usages=BOTH, **etcd_sans)
        ensure_leaf(r / "etcd" / "peer", etcd_ca, node_name, usages=BOTH, **etcd_sans)
        ensure_leaf(r / "etcd" / "healthcheck-client", etcd_ca, "kube-etcd-healthcheck-client", algorithm=alg)
        ensure_leaf(r / "apiserver-etcd-client", etcd_ca, "kube-apiserver-etcd-client", algorithm=alg)
        if not (r / "sa.key").is_file():
            key = new_key(alg)
            write_private(r / "sa.key", private_pem(key))
            (r / "sa.pub").write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def client(self, cn: str, orgs: tuple[str, ...] = ()) -> KeyPair:
        """A client certificate signed by the cluster CA (for a kubeconfig)."""
        return new_leaf(load(self.root / "ca"), cn, orgs=orgs, algorithm=self.algorithm)
