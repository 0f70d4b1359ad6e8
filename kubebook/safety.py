"""Secrets never reach an output: masking for anything displayed or logged, and 0600 files.

Every runbook displays objects through :func:`mask`, so a Secret's values, a
token, a private key or a kubeconfig's ``client-key-data`` show as ``***``
followed by their length, never their content.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

MASK = "***"

# Keys whose values are secret wherever they appear (kubeconfig, TokenRequest status, etc.).
SECRET_KEYS = frozenset({
    "client-key-data", "client-key", "token", "id-token", "refresh-token", "password", "passwd",
    "secret", "private-key", "privatekey", "key-data", "access-token", "bearer-token",
    "etcd-key", "apiKey", "api-key",
})

_PEM_PRIVATE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
# JWTs (ServiceAccount tokens): three base64url parts, the first starting with {"alg" encoded.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_KV_SECRET = re.compile(r"(?i)\b(password|passwd|token|secret)(\s*[=:]\s*)(\S+)")


def masked(value: Any) -> str:
    """The shape of a secret without its content."""
    size = len(value) if isinstance(value, (str, bytes)) else 0
    return f"{MASK}({size} bytes)" if size else MASK


def mask_text(text: str) -> str:
    """Mask PEM private keys, JWTs, bearer tokens and ``password=...`` pairs in free text."""
    text = _PEM_PRIVATE.sub(lambda m: f"-----{m.group(1)}PRIVATE KEY {masked(m.group(0))}-----", text)
    text = _JWT.sub(lambda m: masked(m.group(0)), text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _KV_SECRET.sub(lambda m: m.group(1) + m.group(2) + MASK, text)


def _is_secret_object(obj: dict) -> bool:
    return obj.get("kind") == "Secret" and ("data" in obj or "stringData" in obj)


def mask(obj: Any) -> Any:
    """A copy of ``obj`` (dict/list/str, e.g. a Kubernetes object or a kubeconfig) with secrets masked.

    Secret ``data``/``stringData`` values, the ``last-applied-configuration`` annotation of a
    Secret (it repeats the data), secret-named keys, PEM private keys and JWTs in strings.
    """
    if isinstance(obj, str):
        return mask_text(obj)
    if isinstance(obj, list):
        return [mask(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict = {}
    secret_object = _is_secret_object(obj)
    for key, value in obj.items():
        if secret_object and key in ("data", "stringData") and isinstance(value, dict):
            out[key] = {k: masked(v) for k, v in value.items()}
        elif isinstance(key, str) and key.lower() in SECRET_KEYS and isinstance(value, (str, bytes)):
            out[key] = masked(value)
        else:
            out[key] = mask(value)
    if secret_object:
        annotations = (out.get("metadata") or {}).get("annotations") or {}
        key = "kubectl.kubernetes.io/last-applied-configuration"
        if key in annotations:
            out["metadata"] = copy.copy(out["metadata"])
            out["metadata"]["annotations"] = {**annotations, key: masked(annotations[key])}
    return out


def write_private(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` readable by its owner only (0600), even if the file existed.

    The file is written beside its target and renamed into place, so a reader never sees a
    half-written key and the mode is right from the first byte.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data.encode() if isinstance(data, str) else data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
