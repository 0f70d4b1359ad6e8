"""etcd operations as tables: members, endpoint status and health, keys, put/get and watch.

The client is ``etcd-sdk-python`` (import ``pyetcd``): python-etcd3's API, regenerated for
current protobuf. Its protos predate etcd 3.4, so the few newer fields the tables need
(``isLearner``, ``raftAppliedIndex``, ``dbSizeInUse``, ``errors``, ``storageVersion``) are
read from the response by their field numbers in etcd's ``rpc.proto``.

Where etcd is and which files prove who we are is resolved as etcdctl resolves it (see
:func:`connect`): a runbook parameter, else the kubebook lab, else ``ETCDCTL_*``, else kubeadm's
``https://127.0.0.1:2379`` with the healthcheck client certificate under ``/etc/kubernetes/pki/etcd``.

Writes are steps of a :class:`kubebook.plan.Plan`: :func:`put_many` backs up the values it
replaces (0600) and :func:`cleanup_keys` puts them back, deleting only the keys it created.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from typing import Any, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pyetcd
from google.protobuf.unknown_fields import UnknownFieldSet

from .. import connect as connecting, paths, safety
from ..errors import KubebookError
from ..ownership import BackupFailed
from ..safety import masked
from ..waits import WaitBlocked, WaitTimeout

# kubeadm's files: one home, kubebook.connect (what etcdctl on a control-plane node is given)
DEFAULT_ENDPOINT = connecting.KUBEADM_ETCD["endpoints"]
DEFAULT_CACERT = connecting.KUBEADM_ETCD["cacert"]
DEFAULT_CERT = connecting.KUBEADM_ETCD["cert"]
DEFAULT_KEY = connecting.KUBEADM_ETCD["key"]
# Kubernetes' own keys: demo writes never go there
REGISTRY = "/registry/"

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
        self.source = "given"  # where the endpoint and files came from (see connect())
        self.sources: dict[str, str] = {}

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

    def endpoint_health_checked(self) -> pd.DataFrame:
        """:meth:`endpoint_health`, or EtcdError naming each unhealthy endpoint (a check that stops a run)."""
        health = self.endpoint_health()
        bad = health[~health["HEALTH"]]
        if len(bad):
            raise EtcdError("unhealthy etcd endpoint(s): " + "; ".join(f"{r['ENDPOINT']}: {r['ERROR']}"
                                                                      for r in bad.to_dict("records")))
        return health

    @property
    def files(self) -> dict[str, str]:
        """The TLS files this client uses ("" for none): cacert, cert, key (paths, never contents)."""
        return {"cacert": self._tls["ca_cert"] or "", "cert": self._tls["cert_cert"] or "",
                "key": self._tls["cert_key"] or ""}

    def connection(self) -> pd.DataFrame:
        """Where this client connects and where each setting came from (parameter, lab, $ETCDCTL_*, kubeadm)."""
        rows = [{"setting": "endpoints", "value": ",".join(e.url for e in self.endpoints)}]
        rows += [{"setting": name, "value": value} for name, value in self.files.items()]
        for row in rows:
            row["from"] = self.sources.get(row["setting"], self.source)
        return pd.DataFrame(rows, columns=["setting", "value", "from"])

    def member_name(self) -> str:
        """Name of the member behind the first endpoint (what a changing runbook asks to confirm)."""
        c = self.client()
        try:
            s = c.maintenancestub.Status(pyetcd.etcdrpc.StatusRequest(), self.timeout,
                                         credentials=c.call_credentials, metadata=c.metadata)
        except Exception as exc:  # grpc's errors: unreachable, TLS refused, deadline
            raise EtcdError(f"etcd at {self.endpoints[0].url} did not answer ({_short(exc)}); check that it runs "
                            f"and the endpoint and certificates ({self.source}), then run again") from None
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

    def get_prefix(self, prefix: str, *, limit: int = 1) -> pd.DataFrame:
        """``etcdctl get PREFIX --prefix --limit N``: the first keys under ``prefix`` with their values (masked)."""
        resp = self.client().get_prefix_response(prefix, limit=limit, sort_order="ascend")
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


def target(kubeconfig: str = "", context: str = "", lab: str = "") -> connecting.Target:
    """The cluster of an etcd runbook: :func:`kubebook.connect.target`, under its one policy.

    An etcd runbook may run where no kubeconfig exists at all (a cron job on a control-plane node,
    a machine holding only a snapshot): then the target has no Kubernetes API, and etcd is found
    through ``ETCDCTL_*`` or kubeadm's files. A lab or kubeconfig that was named must exist."""
    try:
        return connecting.target(kubeconfig, context, lab)
    except KubebookError:
        if kubeconfig or lab or os.environ.get(connecting.LAB_ENV):
            raise
        return connecting.Target(None, None, "no kubeconfig: etcd only")


def connect(*, endpoints: str = "", cacert: str = "", cert: str = "", key: str = "", lab: str = "",
            target: Any = None, log: Callable[[str], None] | None = print) -> Etcd:
    """An :class:`Etcd` from runbook parameters, resolved as etcdctl does (see
    :func:`kubebook.connect.etcd_params`): explicit values, else the lab (``lab`` or a ``target``
    that is one), else ``ETCDCTL_*``, else kubeadm's files. ``Etcd.source`` says which, and
    ``log`` prints it (None: quiet)."""
    given = {"endpoints": endpoints, "cacert": cacert, "cert": cert, "key": key}
    params = connecting.etcd_params(**given, lab_name=lab, lab=getattr(target, "lab", None))
    source = params.pop("source")
    etcd = Etcd(params["endpoints"], cacert=params["cacert"] or None, cert=params["cert"] or None,
                key=params["key"] or None)
    etcd.source = source
    etcd.sources = _sources(given, source)
    if log is not None:
        log(f"etcd {params['endpoints']} (endpoint and certificates: {source})")
    return etcd


def _sources(given: dict[str, str], source: str) -> dict[str, str]:
    """Per setting, where it came from (``source`` is one origin, or ``name: origin, ...``)."""
    if not all(f"{name}: " in source for name in given):
        return {name: source for name in given}
    parts = dict(part.split(": ", 1) for part in source.split(", "))
    return {name: parts.get(name, source) for name in given}


# ---- writes: plan steps with a backup of what they replace ------------------------------------
def _demo_keys(prefix: str, count: int) -> dict[str, str]:
    return {f"{prefix}{i}": f"value-{i}" for i in range(1, count + 1)}


def _keys_backup(plan, prefix: str) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in prefix.strip("/")) or "root"
    return plan.record.backup_dir / f"etcd-keys-{slug}.json"


def put_many(plan, etcd: Etcd, prefix: str, count: int) -> str | None:
    """Write ``count`` keys ``<prefix>1..count`` = ``value-1..`` as a step of ``plan``.

    The same keys and values every time, so re-running is safe. Values already there are saved
    first (0600, in the run's backup directory) and put back by :func:`cleanup_keys`; a failed
    backup writes nothing. Kubernetes' own keys (``/registry/``) are refused, in a dry run too."""
    if prefix.startswith(REGISTRY):
        raise EtcdError(f"demo keys under {prefix!r} would overwrite Kubernetes' objects in {REGISTRY}: "
                        "choose another prefix")
    keys = _demo_keys(prefix, count)
    backup = _keys_backup(plan, prefix)

    def act() -> str:
        before = {k: etcd.get_value(k) for k in keys}
        saved = {k: base64.b64encode(v).decode() if v is not None else None for k, v in before.items()}
        try:
            paths.private_dir(backup.parent, tighten=True)
            safety.write_private(backup, json.dumps({"prefix": prefix, "written": keys, "before": saved}))
        except OSError as exc:
            raise BackupFailed(f"backup of the keys under {prefix} to {backup} failed ({exc.strerror}); "
                               "nothing was written") from None
        revisions = [etcd.put(k, v) for k, v in keys.items()]
        kept = sum(v is not None for v in before.values())
        return f"{len(keys)} keys written up to revision {max(revisions, default=0)}" + \
            (f"; {kept} earlier value(s) saved in {backup}" if kept else "")

    return plan.step("put-demo-keys", f"put {count} keys {prefix}1..{count} (earlier values saved first, "
                     "put back at clean-up)", act,
                     command=f"etcdctl put {prefix}1 value-1  # ... up to {prefix}{count}")


def cleanup_keys(plan, etcd: Etcd, prefix: str, *, when: bool = True) -> str | None:
    """Undo :func:`put_many`: delete the keys it created, put back the values it replaced.

    A key whose value changed since this run wrote it belongs to someone else now: it is left."""
    backup = _keys_backup(plan, prefix)
    if not when:
        return plan.step("clean-up-demo-keys", f"leave the demo keys under {prefix} (their earlier values are "
                         f"in {backup})")

    def act() -> str:
        if not backup.is_file():
            return "nothing was written"
        saved = json.loads(backup.read_text())
        deleted, restored, left = 0, 0, []
        for key, ours in saved["written"].items():
            if etcd.get_value(key) != ours.encode():
                left.append(key)
            elif saved["before"].get(key) is None:
                deleted += etcd.delete(key)
            else:
                etcd.put(key, base64.b64decode(saved["before"][key]))
                restored += 1
        return f"{deleted} deleted, {restored} put back" + (f"; changed since, left: {', '.join(left)}" if left else "")

    return plan.step("clean-up-demo-keys", f"delete the demo keys this run created under {prefix}, put back "
                     "the values it replaced", act, command=f"etcdctl del {prefix} --prefix  # only this run's keys")


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
        """Return after ``events`` events, a broken watch, or ``timeout`` seconds, whichever comes first;
        then cancel."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.events) < events and not self.error and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
        self.cancel()
        return self.table()

    @property
    def error(self) -> str:
        """What broke the watch ("" while it is fine)."""
        return next((e["value"] for e in self.events if e["type"] == "ERROR"), "")

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.events, columns=["seconds", "type", "key", "value", "revision"])

    def collect(self, plan, *, events: int, timeout: float) -> pd.DataFrame:
        """The events this watch saw, as a step of ``plan`` that follows its writes.

        Acting: wait for ``events`` events; a broken watch stops at once with its error, too few
        events after ``timeout`` is a timeout. Dry run: nothing was written, so whatever arrived
        (another writer's events) is shown without waiting."""
        def act() -> pd.DataFrame:
            seen = self.wait(events=events, timeout=timeout)
            if self.error:
                raise WaitBlocked(f"the watch on {self.prefix} broke: {self.error}; run again once etcd answers")
            if len(seen) < events:
                raise WaitTimeout(f"the watch on {self.prefix} saw {len(seen)} of {events} event(s) in {timeout:g}s: "
                                  "another client may have written the same values first; run again")
            return seen

        seen = plan.wait("watch-events", f"the watch on {self.prefix} sees {events} event(s) (at most {timeout:g}s)",
                         act)
        if seen is None:
            self.cancel()
            return self.table()
        return seen

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


def registry_summary(keys: pd.DataFrame) -> pd.DataFrame:
    """A :meth:`Etcd.key_table` summed per resource: how many objects, how many bytes."""
    return keys.groupby("resource").agg(objects=("name", "count"), bytes=("size", "sum")) \
        .sort_values("objects", ascending=False)


def _short(exc: Exception) -> str:
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    text = details or str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
