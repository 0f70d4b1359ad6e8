import base64
import os
import stat

from kubebook import pki, safety


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# Made at run time, so that no key or token is ever committed (not even a fake one).
PEM = pki.private_pem(pki.new_key(pki.ECDSA_P256)).decode()
JWT = ".".join(_b64url(part) for part in (b'{"alg":"RS256","kid":"1"}', b'{"sub":"system:serviceaccount:a:b"}',
                                          b"signature-bytes-for-the-test"))


def test_secret_object_data_is_masked_with_length_only():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
              "data": {"password": base64.b64encode(b"hunter2").decode()}, "stringData": {"user": "root"}}
    out = safety.mask(secret)
    assert out["data"]["password"].startswith(safety.MASK)
    assert "hunter2" not in str(out) and base64.b64encode(b"hunter2").decode() not in str(out)
    assert out["stringData"]["user"] == "***(4 bytes)"
    assert secret["data"]["password"] != out["data"]["password"], "the original must be left untouched"


def test_secret_last_applied_annotation_is_masked():
    last = '{"data":{"password":"aHVudGVyMg=="}}'
    secret = {"kind": "Secret", "metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": last}}, "data": {}}
    assert "aHVudGVyMg" not in str(safety.mask(secret))


def test_configmap_data_is_not_masked():
    cm = {"kind": "ConfigMap", "data": {"mode": "fast"}}
    assert safety.mask(cm) == cm


def test_kubeconfig_key_and_token_are_masked():
    cfg = {"users": [{"name": "a", "user": {"client-key-data": "QUJD", "client-certificate-data": "Q0VSVA=="}},
                     {"name": "b", "user": {"token": JWT}}]}
    out = safety.mask(cfg)
    assert out["users"][0]["user"]["client-key-data"].startswith("***")
    assert out["users"][0]["user"]["client-certificate-data"] == "Q0VSVA=="
    assert JWT not in str(out)


def test_free_text_private_key_jwt_and_bearer_are_masked():
    text = f"key:\n{PEM}\ntoken {JWT}\nAuthorization: Bearer abcdefghijkl\npassword=s3cret"
    out = safety.mask_text(text)
    body = PEM.splitlines()[1]
    assert body not in out and JWT not in out
    assert "abcdefghijkl" not in out and "s3cret" not in out
    assert "PRIVATE KEY" in out  # the reader still sees that a key was there


def test_write_private_is_0600_even_over_a_world_readable_file(tmp_path):
    target = tmp_path / "k.key"
    target.write_text("old")
    os.chmod(target, 0o644)
    safety.write_private(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"], "no temporary file left behind"
