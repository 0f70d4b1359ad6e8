import stat

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubebook import kubeconfig, pki


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_kubeadm_tree_with_separate_cas_and_private_keys_0600(tmp_path):
    tree = pki.ClusterPKI(tmp_path / "pki")
    tree.ensure(node_name="k8s-master")
    root = tmp_path / "pki"
    for name in ["ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client",
                 "etcd/ca", "etcd/server", "etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client"]:
        assert (root / f"{name}.crt").is_file(), name
        assert stat.S_IMODE((root / f"{name}.key").stat().st_mode) == 0o600, name
    assert stat.S_IMODE((root / "sa.key").stat().st_mode) == 0o600 and (root / "sa.pub").is_file()
    # three CAs, each signing its own leaves
    assert _cert(root / "apiserver.crt").issuer == _cert(root / "ca.crt").subject
    assert _cert(root / "etcd/healthcheck-client.crt").issuer == _cert(root / "etcd/ca.crt").subject
    assert _cert(root / "front-proxy-client.crt").issuer == _cert(root / "front-proxy-ca.crt").subject
    assert _cert(root / "etcd/ca.crt").subject != _cert(root / "ca.crt").subject


def test_apiserver_serving_cert_names_and_usage(tmp_path):
    tree = pki.ClusterPKI(tmp_path)
    tree.ensure(node_name="k8s-master")
    cert = _cert(tmp_path / "apiserver.crt")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert {str(i) for i in sans.get_values_for_type(x509.IPAddress)} == {"10.96.0.1", "127.0.0.1"}
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_ensure_is_idempotent(tmp_path):
    tree = pki.ClusterPKI(tmp_path)
    tree.ensure(node_name="k8s-master")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    tree.ensure(node_name="k8s-master")
    assert before == {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


def test_client_cert_carries_user_and_groups(tmp_path):
    tree = pki.ClusterPKI(tmp_path)
    tree.ensure(node_name="k8s-master")
    pair = tree.client("luffy-admin", ("admin:luffy",))
    subject = pair.cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "luffy-admin"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "admin:luffy"


def test_kubeconfig_written_0600_and_shown_masked(tmp_path):
    tree = pki.ClusterPKI(tmp_path)
    tree.ensure(node_name="k8s-master")
    pair = tree.client("u")
    path = kubeconfig.write(tmp_path / "u.conf", kubeconfig.build(
        server="https://127.0.0.1:6443", ca_pem=tree.ca_crt.read_bytes(), cert_pem=pair.cert_pem,
        key_pem=pair.key_pem, cluster="c", user="u", context="u@c"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = kubeconfig.show(path)
    key_b64 = kubeconfig.load(path)["users"][0]["user"]["client-key-data"]
    assert key_b64 not in shown and "client-key-data: '***(" in shown
