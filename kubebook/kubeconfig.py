"""Writing and reading kubeconfig files (always 0600, always shown masked)."""
from __future__ import annotations

import base64
from pathlib import Path

import yaml

from .safety import mask, write_private


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build(*, server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes,
          cluster: str, user: str, context: str, namespace: str | None = None) -> dict:
    """A self-contained kubeconfig (certificates embedded) with one cluster, user and context."""
    ctx: dict = {"cluster": cluster, "user": user}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server,
                                                   "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(cert_pem),
                                          "client-key-data": _b64(key_pem)}}],
        "contexts": [{"name": context, "context": ctx}],
        "current-context": context,
        "preferences": {},
    }


def write(path: str | Path, config: dict) -> Path:
    """Write ``config`` to ``path`` with mode 0600 (it holds a private key)."""
    return write_private(path, yaml.safe_dump(config, sort_keys=False))


def load(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}


def show(path: str | Path) -> str:
    """The kubeconfig as YAML with keys and tokens masked: safe to print."""
    return yaml.safe_dump(mask(load(path)), sort_keys=False)
