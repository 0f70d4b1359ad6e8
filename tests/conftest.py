"""Shared fixtures. Lab tests share one lab per session: starting a control plane takes seconds."""
from __future__ import annotations

import os

import pytest

from kubebook import lab as labs


def pytest_collection_modifyitems(config, items):
    if os.environ.get("KUBEBOOK_SKIP_LAB") == "1":
        skip = pytest.mark.skip(reason="KUBEBOOK_SKIP_LAB=1")
        for item in items:
            if "lab" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def lab():
    """A running lab (3 nodes) for the whole session, removed afterwards."""
    with labs.running(f"pytest-{os.getpid()}", nodes=3, timeout=240, keep=False) as running_lab:
        yield running_lab


@pytest.fixture(scope="session")
def api(lab):
    return lab.api_client()


def cluster_objects(api) -> tuple[set[str], set[str]]:
    """Names of the namespaces and PersistentVolumes that exist now."""
    from kubernetes import client
    core = client.CoreV1Api(api)
    return ({n.metadata.name for n in core.list_namespace().items},
            {v.metadata.name for v in core.list_persistent_volume().items})


def remove_new_objects(api, before: tuple[set[str], set[str]], *, timeout: float = 180) -> None:
    """Delete the namespaces and PersistentVolumes made since ``before`` and wait until they are gone,
    so the shared lab's nodes are empty again for the tests that count what runs on them."""
    from kubernetes import client
    from kubebook.waits import wait_for
    core = client.CoreV1Api(api)
    namespaces, volumes = cluster_objects(api)
    for name in namespaces - before[0]:
        core.delete_namespace(name)
    for name in volumes - before[1]:
        core.delete_persistent_volume(name)
    wait_for(api, "namespaces", lambda ns: not (set(ns) - before[0]), timeout=timeout,
             what="namespaces made by the tests gone")
