"""Connecting to a cluster: a kubeconfig and context, or in-cluster when run as a Job."""
from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config

from .errors import KubebookError

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def api_client(kubeconfig: str | os.PathLike | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient for ``kubeconfig``/``context``; with neither, $KUBECONFIG, ~/.kube/config, then in-cluster.

    An explicit ``kubeconfig`` that does not exist is an error, never a silent fallback to
    another cluster.
    """
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise KubebookError(f"kubeconfig not found: {path}")
        return _from_file(path, context)
    env = os.environ.get("KUBECONFIG")
    default = Path.home() / ".kube" / "config"
    if env or default.is_file():
        return _from_file(env.split(os.pathsep)[0] if env else default, context)
    if IN_CLUSTER_TOKEN.is_file():
        config.load_incluster_config()
        return client.ApiClient()
    raise KubebookError("no cluster to talk to: pass kubeconfig=..., set KUBECONFIG, or run in a Pod")


def _from_file(path, context: str | None) -> client.ApiClient:
    try:
        return config.new_client_from_config(config_file=str(path), context=context)
    except config.ConfigException as exc:
        raise KubebookError(f"kubeconfig {path}: {exc}") from None


def current_context(kubeconfig: str | os.PathLike | None = None) -> str | None:
    """The context a runbook will act on (shown before any change)."""
    try:
        _, active = config.list_kube_config_contexts(config_file=str(kubeconfig) if kubeconfig else None)
        return active["name"]
    except (config.ConfigException, FileNotFoundError, TypeError):
        return None
