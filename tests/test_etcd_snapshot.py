"""Snapshots against the lab's real etcd: save, verify, retention, interrupted saves, decoding."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from kubebook import etcd
from kubebook.etcd import decode, snapshot

pytestmark = pytest.mark.lab


@pytest.fixture
def client(lab):
    with etcd.Etcd(**lab.etcd_params()) as c:
        yield c


def test_save_names_verifies_and_writes_sidecar(client, tmp_path):
    when = dt.datetime(2026, 11, 28, 3, 0)
    info = snapshot.save(client, tmp_path, when=when, progress=False)
    assert info.path.endswith("k8s-master-etcd_202611280300.db")
    side = json.loads(info.sidecar.read_text())
    assert side["sha256"] == info.sha256 and side["revision"] == info.revision > 0
    assert side["total_keys"] > 100  # a Kubernetes cluster's etcd, not an empty one
    assert snapshot.verify_checksum(info.path) == info.sha256
    again = snapshot.save(client, tmp_path, when=when, progress=False)  # same minute: a new name, no overwrite
    assert again.path.endswith("k8s-master-etcd_202611280300-2.db")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_truncated_snapshot_is_refused(client, tmp_path):
    info = snapshot.save(client, tmp_path, progress=False)
    broken = tmp_path / "broken-etcd_202601010000.db"
    broken.write_bytes(open(info.path, "rb").read()[:-100])
    with pytest.raises(snapshot.SnapshotError, match="does not match"):
        snapshot.describe(broken)


def test_interrupted_save_leaves_no_file(client, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(snapshot, "describe", boom)  # fail after streaming, before the rename
    with pytest.raises(RuntimeError, match="disk full"):
        snapshot.save(client, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_retention_keeps_newest_and_never_the_new_one(client, tmp_path):
    taken = [snapshot.save(client, tmp_path, when=dt.datetime(2026, 1, d, 12, 0), progress=False) for d in (1, 2, 3, 4)]
    old = snapshot.to_prune(tmp_path, host="k8s-master", keep=2, protect=taken[0].path)
    # the protected one (oldest by name, just taken) stays; of the rest only the newest survives
    assert [p.name for p in old] == ["k8s-master-etcd_202601021200.db",
                                     "k8s-master-etcd_202601031200.db"]
    snapshot.prune(old)
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["k8s-master-etcd_202601011200.db",
                                                             "k8s-master-etcd_202601041200.db"]
    assert not (tmp_path / "k8s-master-etcd_202601021200.json").exists()


def test_decode_snapshot_with_upstream_codecs(client, lab, tmp_path):
    info = snapshot.save(client, tmp_path, progress=False)
    records = decode.read_snapshot(info.path)
    node = decode.find(records, resource="nodes", name="k8s-master")
    assert node.encoding == "protobuf" and node.object["kind"] == "Node"
    assert node.object["metadata"]["labels"]["kubernetes.io/hostname"] == "k8s-master"
    secrets = [r for r in records if r.kind == "Secret"]
    shown = "".join(decode.show(r) for r in records)
    for s in secrets:
        for value in (s.object.get("data") or {}).values():
            assert value not in shown
    live = {r.key for r in decode.read_live(client)}
    assert {r.key for r in records} - live <= {r.key for r in records if "/events/" in r.key or "/leases/" in r.key}


def test_decode_reports_encrypted_and_json_values():
    records = decode.decode_values([
        ("/registry/secrets/a/b", b"k8s:enc:aescbc:v1:key1:\x00\x01garbage"),
        ("/registry/luffy.example.com/widgets/a/w", b'{"apiVersion":"luffy.example.com/v1","kind":"Widget",'
                                                     b'"metadata":{"name":"w","namespace":"a"}}'),
        ("/registry/pods/a/broken", b"k8s\x00\x0a\x04junk"),
    ])
    enc, cr, broken = records
    assert enc.encoding == "encrypted" and enc.object is None and "aescbc" in enc.status
    assert cr.encoding == "json" and cr.object["kind"] == "Widget"
    assert broken.status.startswith("undecodable")


def test_snapshots_and_sidecars_are_0600_in_a_0700_directory(client, tmp_path):
    info = snapshot.save(client, tmp_path / "new" / "dir", progress=False)
    assert (tmp_path / "new" / "dir").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700, "every directory kubebook creates"
    from pathlib import Path
    assert Path(info.path).stat().st_mode & 0o777 == 0o600
    assert info.sidecar.stat().st_mode & 0o777 == 0o600
    assert set(snapshot.table(tmp_path / "new" / "dir")["mode"]) == {"0600"}


def test_a_host_with_a_path_in_it_writes_nothing_anywhere(client, tmp_path):
    inside = tmp_path / "a" / "b"
    for host in ("../../../x", "../x", "x/../../y"):
        with pytest.raises(snapshot.SnapshotError, match="one name"):
            snapshot.save(client, inside, host=host, progress=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
