"""etcd helpers that need no server: key parsing and value display."""
import pytest

from kubebook import etcd


@pytest.mark.parametrize("key, expected", [
    ("/registry/pods/luffy/web-1", ("pods", "luffy", "web-1")),
    ("/registry/namespaces/luffy", ("namespaces", "", "luffy")),
    ("/registry/minions/k8s-slave1", ("nodes", "", "k8s-slave1")),
    ("/registry/services/specs/default/kubernetes", ("services", "default", "kubernetes")),
    ("/registry/services/endpoints/luffy/web", ("endpoints", "luffy", "web")),
    ("/registry/apiregistration.k8s.io/apiservices/v1.apps", ("apiservices.apiregistration.k8s.io", "", "v1.apps")),
    ("/registry/example.com/widgets/luffy/w1", ("widgets.example.com", "luffy", "w1")),
    ("/luffy/1", ("", "", "/luffy/1")),
])
def test_parse_registry_key(key, expected):
    got = etcd.parse_registry_key(key)
    assert (got["resource"], got["namespace"], got["name"]) == expected


def test_display_value_masks_secrets_and_shows_binary_as_hex():
    assert etcd.display_value("/registry/secrets/luffy/db", b"k8s\x00password") == "***(12 bytes)"
    assert etcd.display_value("/luffy/1", b"value-1") == "value-1"
    shown = etcd.display_value("/registry/pods/a/b", b"k8s\x00\x0a\x09\x0a\x02v1")
    assert shown.startswith("<binary 10 bytes: 6b387300")


def test_endpoints_are_validated():
    with pytest.raises(etcd.EtcdError, match="expected https://host:port"):
        etcd.parse_endpoints("127.0.0.1:2379")
    assert [e.port for e in etcd.parse_endpoints("https://127.0.0.1:2379,https://127.0.0.2:3379")] == [2379, 3379]


def test_missing_certificate_files_are_named(tmp_path):
    with pytest.raises(etcd.EtcdError, match="cacert file not found"):
        etcd.Etcd("https://127.0.0.1:2379", cacert=str(tmp_path / "nope.crt"), cert=None, key=None)
    with pytest.raises(etcd.EtcdError, match="give both or neither"):
        etcd.Etcd("https://127.0.0.1:2379", cacert=None, cert="a", key=None)


def test_human_bytes():
    assert etcd.human_bytes(20480) == "20.5 kB"
    assert etcd.human_bytes(12) == "12 B"
