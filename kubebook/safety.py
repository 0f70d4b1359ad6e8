"""Secrets never reach an output: masking for anything displayed or logged, and 0600 files.

Every runbook displays objects through :func:`mask`, so a Secret's values, a
token, a private key or a kubeconfig's ``client-key-data`` show as ``***``
followed by their length, never their content.
"""
from __future__ import annotations

import contextlib
import copy
import os
import re
import tempfile
from pathlib import Path
from typing import Any

MASK = "***"

# A key (in an object, helm values, an env var name, ``NAME=value`` text) whose value is secret
# however it is spelled: password, adminPassword, DB_PASSWORD, db_passwd, FOO_TOKEN, apiToken,
# secretKey, client-key-data, private-key, api_key, credentials, passphrase...
_SECRET_KEY = re.compile(r"(?i)(passw(or)?d|passwd|passphrase|token|secret|private[-_]?key|api[-_]?key|"
                         r"access[-_]?key|client[-_]?key|key[-_]?data|credential)")

_PEM_PRIVATE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
# JWTs (ServiceAccount tokens): three base64url parts, the first starting with {"alg" encoded.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# NAME=value / name: value where NAME ends in a secret word (DB_PASSWORD=x, adminPassword: x, --token=x).
_KV_SECRET = re.compile(r"(?i)\b([A-Za-z0-9_.-]*(?:password|passwd|passphrase|token|secret|api[-_]?key|"
                        r"private[-_]?key))(\s*[=:]\s*|\s+(?=[\"']))(\"[^\"]*\"|'[^']*'|[^\s,;\"'}\]]+)")

# Values known to be secret in this process (secret parameters, tokens kubebook obtained): masked
# wherever they appear, whatever surrounds them.
_REGISTERED: set[str] = set()


def is_secret_key(key: Any) -> bool:
    """Whether values under ``key`` are secret (the one rule for objects, values, env and text)."""
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def register_secret(value: str) -> None:
    """Mask ``value`` (and its base64 form) in everything kubebook shows from now on."""
    import base64
    if not isinstance(value, str) or len(value) < 4 or value.startswith(MASK):
        return
    _REGISTERED.add(value)
    _REGISTERED.add(base64.b64encode(value.encode()).decode())


def registered_secrets() -> frozenset[str]:
    return frozenset(_REGISTERED)


def masked(value: Any) -> str:
    """The shape of a secret without its content."""
    size = len(value) if isinstance(value, (str, bytes)) else 0
    return f"{MASK}({size} bytes)" if size else MASK


def mask_text(text: str) -> str:
    """Mask registered secrets, PEM private keys, JWTs, bearer tokens and ``PASSWORD=...`` pairs in free text."""
    for secret in sorted(_REGISTERED, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, masked(secret))
    text = _PEM_PRIVATE.sub(lambda m: f"-----{m.group(1)}PRIVATE KEY {masked(m.group(0))}-----", text)
    text = _JWT.sub(lambda m: masked(m.group(0)), text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _KV_SECRET.sub(lambda m: m.group(0) if m.group(3).startswith(MASK) else
                          m.group(1) + m.group(2) + MASK, text)


def _is_secret_object(obj: dict) -> bool:
    return obj.get("kind") == "Secret" and ("data" in obj or "stringData" in obj)


def _secret_scalar(value: Any) -> bool:
    """A value worth masking under a secret key: not empty (an unset password is worth seeing), not a
    flag, not already masked."""
    return value not in ("", None, b"") and not isinstance(value, (bool, dict, list, tuple)) and \
        not str(value).startswith(MASK)


def mask(obj: Any) -> Any:
    """A copy of ``obj`` (a Kubernetes object, a kubeconfig, helm values...) with secrets masked.

    Secret ``data``/``stringData`` values, the ``last-applied-configuration`` annotation of a
    Secret (it repeats the data), values under secret-looking keys, env entries whose name looks
    secret (``{"name": "DB_PASSWORD", "value": ...}``), and in every string: registered secrets,
    PEM private keys, JWTs and ``NAME=value`` pairs.
    """
    if isinstance(obj, str):
        return mask_text(obj)
    if isinstance(obj, (list, tuple)):
        return [mask(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict = {}
    secret_object = _is_secret_object(obj)
    env_entry = is_secret_key(obj.get("name")) and "value" in obj
    for key, value in obj.items():
        if secret_object and key in ("data", "stringData") and isinstance(value, dict):
            out[key] = {k: masked(v) for k, v in value.items()}
        elif (is_secret_key(key) or (env_entry and key == "value")) and _secret_scalar(value):
            out[key] = masked(value if isinstance(value, (str, bytes)) else str(value))
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

    The bytes go to a new file with an unpredictable name beside the target (``mkstemp``: created
    exclusively, mode 0600 from the first byte, never through a planted symlink), then the file is
    renamed over ``path``: a symlink at ``path`` is replaced, not followed, and a reader never sees
    half a key. Directories made on the way are 0700.
    """
    from .paths import private_dir
    path = Path(path)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def mask_values(values: Any) -> Any:
    """Helm values (or any nested dict/list) with secret-looking keys masked: :func:`mask`'s rule."""
    return mask(values)


# ---------------------------------------------------------------- kernel outputs

_BINARY_MIME = ("image/", "application/pdf", "application/octet-stream")


def _scrub(content: Any) -> Any:
    if isinstance(content, str):
        return mask_text(content) if _REGISTERED or "PRIVATE KEY" in content or "eyJ" in content else content
    if isinstance(content, list):
        return [_scrub(v) for v in content]
    if isinstance(content, dict):
        return {k: v if isinstance(k, str) and k.startswith(_BINARY_MIME) else _scrub(v) for k, v in content.items()}
    return content


def scrub_kernel_output(shell: Any) -> bool:
    """Mask secrets in every message this IPython kernel sends (outputs, errors, replies).

    Whatever a cell prints or displays leaves the kernel through its session's ``send``; wrapping
    it there covers print(), displayed tables, tracebacks and widgets alike, so a secret known to
    kubebook cannot reach a notebook even through code that forgot to mask. Returns False outside
    an ipykernel.
    """
    session = getattr(getattr(shell, "kernel", None), "session", None)
    if session is None or getattr(session, "_kubebook_scrubbed", False):
        return session is not None
    original = session.send

    def send(stream, msg_or_type, content=None, *args, **kwargs):
        if isinstance(msg_or_type, dict) and "content" in msg_or_type:
            msg_or_type = {**msg_or_type, "content": _scrub(msg_or_type["content"])}
        elif content is not None:
            content = _scrub(content)
        return original(stream, msg_or_type, content, *args, **kwargs)

    session.send = send
    session._kubebook_scrubbed = True
    return True
