"""etcd operations as tables: members, endpoint status and health, keys, put/get and watch.

The client is ``etcd-sdk-python`` (import ``pyetcd``): python-etcd3's API, regenerated for
current protobuf. Its protos predate etcd 3.4, so the few newer fields the tables need
(``isLearner``, ``raftAppliedIndex``, ``dbSizeInUse``, ``errors``, ``storageVersion``) are
read from the response by their field numbers in etcd's ``rpc.proto``.

Defaults follow kubeadm: ``https://127.0.0.1:2379`` with the healthcheck client certificate
under ``/etc/kubernetes/pki/etcd``.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pyetcd
from google.protobuf.unknown_fields import UnknownFieldSet

from ..errors import KubebookError
from ..safety import masked

KUBEADM_PKI = Path("/etc/kubernetes/pki")
DEFAULT_ENDPOINT = "https://127.0.0.1:2379"
DEFAULT_CACERT = str(KUBEADM_PKI / "etcd" / "ca.crt")
DEFAULT_CERT = str(KUBEADM_PKI / "etcd" / "healthcheck-client.crt")
DEFAULT_KEY = str(KUBEADM_PKI / "etcd" / "healthcheck-client.key")

# Field numbers from etcd's api/etcdserverpb/rpc.proto (3.6) that pyetcd's protos lack.
_STATUS_EXTRA = {7: "raftAppliedIndex", 8: "errors", 9: "dbSizeInUse", 10: "isLearner", 11: "storageVersion"}
_MEMBER_IS_LEARNER = 5

# Key prefixes under /registry whose values hold credentials.
SECRET_PREFIXES = ("/registry/secrets/",)

# /registry storage paths that are not the resource's name
_STORAGE_NAMES = {"minions": "nodes", "services/specs": "services", "services/endpoints": "endpoints",
                  "controllers": "replicationcontrollers", "serviceips": "serviceips"}


class EtcdError(KubebookError):
    pass


def _unknown(message, numbers: dict[int, str]) -> dict[str, object]:
    """Decode the unknown varint/length fields of ``message`` that ``numbers`` names."""
    out: dict[str, object] = {}
    for f in UnknownFieldSet(message):
        name = numbers.get(f.field_number)
        if name is None:
            continue
        value = f.data
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if name == "errors":
            out.setdefault(name, []).append(value)
        elif name == "isLearner":
            out[name] = bool(value)
        else:
            out[name] = value
    return out


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(n)


@dataclass(frozen=True)
class Endpoint:
    url: str

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 2379

    @property
    def tls(self) -> bool:
        return urlparse(self.url).scheme == "https"


def parse_endpoints(endpoints: str | list[str]) -> list[Endpoint]:
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    parsed = [Endpoint(e.strip()) for e in items if e.strip()]
    if not parsed:
        raise EtcdError("no etcd endpoint given")
    for e in parsed:
        if urlparse(e.url).scheme not in ("http", "https"):
            raise EtcdError(f"etcd endpoint {e.url!r}: expected https://host:port")
    return parsed


class Etcd:
    """A connection to an etcd cluster, like ``etcdctl --endpoints ... --cacert ... --cert ... --key ...``.

    >>> etcd = Etcd("https://127.0.0.1:2379", cacert=..., cert=..., key=...)
    >>> etcd.member_list()
    """

    def __init__(self, endpoints: str | list[str] = DEFAULT_ENDPOINT, *, cacert: str | None = DEFAULT_CACERT,
                 cert: str | None = DEFAULT_CERT, key: str | None = DEFAULT_KEY, timeout: float = 5.0):
        self.endpoints = parse_endpoints(endpoints)
        self.timeout = timeout
        if any(e.tls for e in self.endpoints):
            if bool(cert) != bool(key):
                raise EtcdError("etcd client certificate and key go together: give both or neither")
            for label, path in (("cacert", cacert), ("cert", cert), ("key", key)):
                if (path or label == "cacert") and not (path and Path(path).is_file()):
                    raise EtcdError(f"etcd {label} file not found: {path}")
        self._tls = dict(ca_cert=cacert, cert_cert=cert, cert_key=key)
        self._clients: dict[str, pyetcd.Etcd3Client] = {}

    def client(self, endpoint: Endpoint | None = None) -> pyetcd.Etcd3Client:
        endpoint = endpoint or self.endpoints[0]
        if endpoint.url not in self._clients:
            tls = self._tls if endpoint.tls else {}
            self._clients[endpoint.url] = pyetcd.client(host=endpoint.host, port=endpoint.port,
                                                        timeout=self.timeout, **tls)
        return self._clients[endpoint.url]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    def __enter__(self) -> "Etcd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- cluster views (etcdctl -w table) --------------------------------------------------
    def member_list(self) -> pd.DataFrame:
        """``etcdctl member list -w table``."""
        c = self.client()
        resp = c.clusterstub.MemberList(pyetcd.etcdrpc.MemberListRequest(), self.timeout,
                                        credentials=c.call_credentials, metadata=c.metadata)
        rows = []
        for m in resp.members:
            learner = bool(_unknown(m, {_MEMBER_IS_LEARNER: "isLearner"}).get("isLearner", False))
            rows.append({"ID": f"{m.ID:x}", "STATUS": "started" if m.name else "unstarted", "NAME": m.name,
                         "PEER ADDRS": ",".join(m.peerURLs), "CLIENT ADDRS": ",".join(m.clientURLs),
                         "IS LEARNER": learner})
        return pd.DataFrame(rows)

    def endpoint_status(self) -> pd.DataFrame:
        """``etcdctl endpoint status -w table``: one row per endpoint; an unreachable one shows its error."""
        rows = []
        for e in self.endpoints:
            try:
                c = self.client(e)
                s = c.maintenancestub.Status(pyetcd.etcdrpc.StatusRequest(), self.timeout,
                                             credentials=c.call_credentials, metadata=c.metadata)
            except Exception as exc:  # one bad endpoint must not hide the others
                rows.append({"ENDPOINT": e.url, "ERRORS": _short(exc)})
                continue
            extra = _unknown(s, _STATUS_EXTRA)
            rows.append({
                "ENDPOINT": e.url, "ID": f"{s.header.member_id:x}", "VERSION": s.version,
                "STORAGE VERSION": extra.get("storageVersion", ""), "DB SIZE": human_bytes(s.dbSize),
                "IN USE": human_bytes(extra.get("dbSizeInUse")),
                "IS LEADER": s.leader == s.header.member_id, "IS LEARNER": extra.get("isLearner", False),
                "RAFT TERM": s.raftTerm, "RAFT INDEX": s.raftIndex,
                "RAFT APPLIED INDEX": extra.get("raftAppliedIndex"),
                "ERRORS": ", ".join(extra.get("errors", [])),
            })
        return pd.DataFrame(rows)

    def endpoint_health(self) -> pd.DataFrame:
        """``etcdctl endpoint health -w table``: a linearizable read of key ``health`` per endpoint."""
        rows = []
        for e in self.endpoints:
            started = time.perf_counter()
            try:
                self.client(e).get("health")
                error = ""
            except Exception as exc:
                error = _short(exc)
            took = time.perf_counter() - started
            rows.append({"ENDPOINT": e.url, "HEALTH": not error, "TOOK": f"{took * 1000:.1f}ms", "ERROR": error})
        return pd.DataFrame(rows)

    def is_healthy(self) -> bool:
        return bool(self.endpoint_health()["HEALTH"].all())

    def member_name(self) -> str:
        """Name of the member behind the first endpoint (what a changing runbook asks to confirm)."""
        c = self.client()
        s = c.maintenancestub.Status(pyetcd.etcdrpc.StatusRequest(), self.timeout,
                                     credentials=c.call_credentials, metadata=c.metadata)
        members = self.member_list()
        match = members[members["ID"] == f"{s.header.member_id:x}"]
        return str(match["NAME"].iloc[0]) if len(match) else f"{s.header.member_id:x}"

    # ---- keys -------------------------------------------------------------------------------
    def put(self, key: str, value: str | bytes) -> int:
        """``etcdctl put``; returns the revision the write created."""
        return self.client().put(key, value).header.revision

    def get(self, key: str) -> pd.DataFrame:
        """``etcdctl get KEY``: the value for display (masked under /registry/secrets/, binary as hex)."""
        resp = self.client().get_response(key)
        return pd.DataFrame([_kv_row(kv) for kv in resp.kvs], columns=_KV_COLUMNS)

    def get_value(self, key: str) -> bytes | None:
        value, _ = self.client().get(key)
        return value

    def delete(self, key: str) -> bool:
        return self.client().delete(key)

    def keys(self, prefix: str = "/", *, limit: int | None = None) -> list[str]:
        """``etcdctl get PREFIX --prefix --keys-only``."""
        resp = self.client().get_prefix_response(prefix, keys_only=True, limit=limit, sort_order="ascend")
        return [kv.key.decode(errors="replace") for kv in resp.kvs]

    def key_table(self, prefix: str = "/registry/") -> pd.DataFrame:
        """Keys under ``prefix`` as resource, namespace, name, value size and revisions."""
        resp = self.client().get_prefix_response(prefix, sort_order="ascend")
        rows = []
        for kv in resp.kvs:
            key = kv.key.decode(errors="replace")
            rows.append({**parse_registry_key(key), "key": key, "size": len(kv.value),
                         "create_revision": kv.create_revision, "mod_revision": kv.mod_revision})
        return pd.DataFrame(rows, columns=["resource", "namespace", "name", "key", "size",
                                           "create_revision", "mod_revision"])

    def count(self, prefix: str = "/") -> int:
        return self.client().get_prefix_response(prefix, count_only=True).count

    def revision(self) -> int:
        return self.client().get_response("health").header.revision

    # ---- watch ------------------------------------------------------------------------------
    def watch_prefix(self, prefix: str) -> "PrefixWatch":
        """Start watching ``prefix`` now; collect with :meth:`PrefixWatch.wait`."""
        return PrefixWatch(self.client(), prefix)


def connect(*, endpoints: str = DEFAULT_ENDPOINT, cacert: str = DEFAULT_CACERT, cert: str = DEFAULT_CERT,
            key: str = DEFAULT_KEY, lab: str = "") -> Etcd:
    """An :class:`Etcd` from runbook parameters; ``lab`` (a lab name) replaces the rest with that lab's."""
    if lab:
        from .. import lab as labs
        the_lab = labs.get(lab)
        if not the_lab.ports:
            raise EtcdError(f"lab {lab!r} has never been started: kubebook lab up --name {lab}")
        return Etcd(**the_lab.etcd_params())
    return Etcd(endpoints, cacert=cacert, cert=cert, key=key)


def put_many(etcd: Etcd, prefix: str, count: int) -> list[int]:
    """Write ``count`` keys ``<prefix>1..count`` = ``value-1..`` (the same every time: re-running is safe)."""
    return [etcd.put(f"{prefix}{i}", f"value-{i}") for i in range(1, count + 1)]


class PrefixWatch:
    """A watch running in the background, like ``etcdctl watch PREFIX --prefix`` in another window."""

    def __init__(self, client: pyetcd.Etcd3Client, prefix: str):
        self._client = client
        self.prefix = prefix
        self.events: list[dict] = []
        self._changed = threading.Condition()
        self._started = time.monotonic()
        self._id = client.add_watch_prefix_callback(prefix, self._on_response)

    def _on_response(self, response) -> None:
        rows = []
        if isinstance(response, Exception):
            rows.append({"type": "ERROR", "key": "", "value": _short(response), "revision": None})
        else:
            for ev in response.events:
                kind = "DELETE" if isinstance(ev, pyetcd.events.DeleteEvent) else "PUT"
                key = ev.key.decode(errors="replace")
                rows.append({"type": kind, "key": key, "value": display_value(key, ev.value),
                             "revision": ev.mod_revision})
        with self._changed:
            for row in rows:
                row["seconds"] = round(time.monotonic() - self._started, 3)
                self.events.append(row)
            self._changed.notify_all()

    def wait(self, *, events: int = 1, timeout: float = 10.0) -> pd.DataFrame:
        """Return after ``events`` events or ``timeout`` seconds, whichever comes first; then cancel."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.events) < events and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
        self.cancel()
        return pd.DataFrame(self.events, columns=["seconds", "type", "key", "value", "revision"])

    def cancel(self) -> None:
        if self._id is not None:
            self._client.cancel_watch(self._id)
            self._id = None


_KV_COLUMNS = ["key", "value", "size", "create_revision", "mod_revision", "version"]


def _kv_row(kv) -> dict:
    key = kv.key.decode(errors="replace")
    return {"key": key, "value": display_value(key, kv.value), "size": len(kv.value),
            "create_revision": kv.create_revision, "mod_revision": kv.mod_revision, "version": kv.version}


def display_value(key: str, value: bytes, *, limit: int = 120) -> str:
    """A value as it may be shown: masked for Secrets, text if printable, else the start in hex."""
    if key.startswith(SECRET_PREFIXES):
        return masked(value)
    try:
        text = value.decode("utf-8")
        if text.isprintable() or not text:
            return text if len(text) <= limit else text[:limit] + "…"
    except UnicodeDecodeError:
        pass
    # Kubernetes stores built-in objects as protobuf behind the magic "k8s\0"; decoding is kubebook.decode's job
    return f"<binary {len(value)} bytes: {value[:24].hex()}…>"


def parse_registry_key(key: str) -> dict[str, str]:
    """Split ``/registry/...`` into resource, namespace and name.

    ``/registry/pods/luffy/web-1`` → pods, luffy, web-1; ``/registry/namespaces/luffy`` → namespaces,
    "", luffy; ``/registry/apiregistration.k8s.io/apiservices/v1.apps`` → apiservices.apiregistration.k8s.io.
    """
    parts = key.split("/")
    if len(parts) < 3 or parts[1] != "registry":
        return {"resource": "", "namespace": "", "name": key}
    rest = parts[2:]
    resource = rest.pop(0)
    if "." in resource and rest:  # a group prefix: /registry/<group>/<resource>/...
        resource = f"{rest.pop(0)}.{resource}"
    elif resource == "services" and rest and rest[0] in ("specs", "endpoints"):
        resource = f"services/{rest.pop(0)}"
    resource = _STORAGE_NAMES.get(resource, resource)
    if len(rest) >= 2:
        return {"resource": resource, "namespace": rest[0], "name": "/".join(rest[1:])}
    return {"resource": resource, "namespace": "", "name": rest[0] if rest else ""}


def _short(exc: Exception) -> str:
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    text = details or str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
