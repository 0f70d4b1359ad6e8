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
