"""The off-host copy of a snapshot: private files, read back and checked, removed when they differ."""
from __future__ import annotations

import hashlib
import os
import stat

import pytest

from kubebook.etcd import snapshot


def _info(tmp_path, data: bytes = b"etcd snapshot bytes" * 1000) -> snapshot.SnapshotInfo:
    path = tmp_path / "src" / "k8s-master-etcd_202601010000.db"
    path.parent.mkdir()
    path.write_bytes(data)
    path.with_suffix(".json").write_text('{"revision": 7}')
    return snapshot.SnapshotInfo(path=str(path), sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                                 hash=1, revision=7, total_keys=1, total_size=len(data), version="3.6.0",
                                 member="k8s-master")


def test_a_copy_to_a_directory_is_private_and_verified(tmp_path):
    info = _info(tmp_path)
    table = snapshot.copy(info, str(tmp_path / "mnt" / "etcd"))
    copy = tmp_path / "mnt" / "etcd" / "k8s-master-etcd_202601010000.db"
    assert list(table["verified"]) == ["sha256 matches"] and table["copied to"][0] == str(copy)
    assert copy.read_bytes() == open(info.path, "rb").read()
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(copy.parent).st_mode) == 0o700
    assert copy.with_suffix(".json").read_text() == '{"revision": 7}'
    assert not list(copy.parent.glob(".*partial"))


def test_a_copy_that_differs_is_removed_and_fails(tmp_path):
    info = _info(tmp_path)
    wrong = snapshot.SnapshotInfo(**{**info.__dict__, "sha256": "0" * 64})   # the file changed after its check
    with pytest.raises(snapshot.SnapshotError, match="not trustworthy"):
        snapshot.copy(wrong, str(tmp_path / "mnt"))
    assert list((tmp_path / "mnt").iterdir()) == []


def test_no_destination_means_an_empty_table(tmp_path):
    assert len(snapshot.copy(_info(tmp_path), "")) == 0


def test_a_copy_to_object_storage_goes_through_fsspec(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    info = _info(tmp_path)
    table = snapshot.copy(info, "memory://bucket/etcd/")
    fs = fsspec.filesystem("memory")
    assert fs.cat("/bucket/etcd/k8s-master-etcd_202601010000.db") == open(info.path, "rb").read()
    assert fs.cat("/bucket/etcd/k8s-master-etcd_202601010000.json") == b'{"revision": 7}'
    assert table["copied to"][0] == "memory://bucket/etcd/k8s-master-etcd_202601010000.db"
