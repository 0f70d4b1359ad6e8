"""Connecting to a cluster: which one a runbook acts on, decided once, under one policy.

    target = connect.target(kubeconfig, context, lab)   # the runbook's three parameters
    target.api            # an ApiClient
    target.etcd_params()  # endpoint and TLS files for etcd, with where they came from
    target.describe()     # what was chosen and why (shown before any change)

The order, first match wins:

1. ``lab``: the kubebook lab of that name (its admin kubeconfig);
2. ``kubeconfig`` (+ ``context``): that file, which must exist (never a silent fallback);
3. ``$KUBEBOOK_LAB``: the lab ``kubebook jupyter`` (or a test) started, so runbooks opened there
   act on it with no parameter edited;
4. ``$KUBECONFIG`` (its first file), ``~/.kube/config``, then the Pod's ServiceAccount in-cluster.

etcd follows etcdctl: explicit parameters, else the lab, else ``ETCDCTL_ENDPOINTS``/``_CACERT``/
``_CERT``/``_KEY``, else kubeadm's paths on a control-plane node.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .errors import KubebookError

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
LAB_ENV = "KUBEBOOK_LAB"

# kubeadm's etcd client files on a control-plane node (what the course's etcdctl alias passes)
KUBEADM_ETCD = {"endpoints": "https://127.0.0.1:2379", "cacert": "/etc/kubernetes/pki/etcd/ca.crt",
                "cert": "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                "key": "/etc/kubernetes/pki/etcd/healthcheck-client.key"}
ETCDCTL_ENV = {"endpoints": "ETCDCTL_ENDPOINTS", "cacert": "ETCDCTL_CACERT", "cert": "ETCDCTL_CERT",
               "key": "ETCDCTL_KEY"}


@dataclass
class Target:
    """The cluster a runbook acts on. ``lab`` is set when it is a kubebook lab."""

    kubeconfig: Path | None
    context: str | None
    source: str
    lab: Any = None  # a kubebook.lab.Lab
    _api: Any = field(default=None, repr=False)

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            self._api = api_client(self.kubeconfig, self.context)
        return self._api

    @property
    def name(self) -> str:
        """What a ``confirm`` names for the whole cluster: the lab's name, else the context's."""
        if self.lab is not None:
            return self.lab.name
        return self.context or current_context(self.kubeconfig) or "in-cluster"

    def helm(self, **options: Any):
        from .helm import Helm
        return Helm(str(self.kubeconfig) if self.kubeconfig else None, self.context, **options)

    def etcd_params(self, endpoints: str = "", cacert: str = "", cert: str = "", key: str = "") -> dict[str, str]:
        """etcd's endpoint and client files, and ``source``: which of them came from where."""
        return etcd_params(endpoints=endpoints, cacert=cacert, cert=cert, key=key, lab=self.lab)

    def require_lab(self, name: str = "") -> Any:
        """The lab this target is, or an error: rehearsals stage disasters and run nowhere else.

        The kubeconfig must point at the lab's apiserver with the lab's CA (not merely be named so),
        and the lab must be running."""
        lab = self.lab
        if lab is None:
            raise KubebookError(f"this step rehearses on a kubebook lab only, and {self.source} is not one "
                                "(pass lab=<name>)")
        if name and lab.name != name:
            raise KubebookError(f"the target is lab {lab.name!r}, not {name!r}")
        if not lab.is_running():
            raise KubebookError(f"lab {lab.name!r} is not running: kubebook lab up --name {lab.name}")
        verify_lab_kubeconfig(lab, self.kubeconfig, self.context)
        return lab

    def describe(self) -> str:
        where = f"kubebook lab {self.lab.name}" if self.lab is not None else f"context {self.name}"
        return f"{where} ({self.source})"

    def __str__(self) -> str:
        return self.describe()


def _lab(name: str):
    from . import lab as labs  # the lab is optional: only imported when a runbook names one
    the_lab = labs.get(name)
    if not the_lab.ports:
        raise KubebookError(f"lab {name!r} has never been started: kubebook lab up --name {name}")
    return the_lab


def target(kubeconfig: str | os.PathLike | None = "", context: str | None = "", lab: str | None = "") -> Target:
    """Resolve a runbook's ``kubeconfig``/``context``/``lab`` parameters (see the module's order)."""
    if lab and kubeconfig:
        raise KubebookError("give either lab or kubeconfig, not both")
    if lab:
        the_lab = _lab(lab)
        return Target(the_lab.kubeconfig, context or the_lab.context, f"parameter lab={lab}", the_lab)
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise KubebookError(f"kubeconfig not found: {path}")
        return Target(path, context or None, "parameter kubeconfig")
    env_lab = os.environ.get(LAB_ENV)
    if env_lab:
        the_lab = _lab(env_lab)
        return Target(the_lab.kubeconfig, context or the_lab.context, f"${LAB_ENV}={env_lab}", the_lab)
    env = os.environ.get("KUBECONFIG")
    if env:
        return Target(Path(env.split(os.pathsep)[0]), context or None, "$KUBECONFIG")
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return Target(default, context or None, "~/.kube/config")
    if IN_CLUSTER_TOKEN.is_file():
        return Target(None, None, "in-cluster ServiceAccount")
    raise KubebookError("no cluster to talk to: pass kubeconfig=... or lab=..., set KUBECONFIG, or run in a Pod")


def etcd_params(*, endpoints: str = "", cacert: str = "", cert: str = "", key: str = "", lab: Any = None,
                lab_name: str = "") -> dict[str, str]:
    """etcd connection parameters: explicit ones, else the lab's, else ``ETCDCTL_*``, else kubeadm's.

    Each of the four is resolved on its own, as etcdctl does (a flag beats its variable), and
    ``source`` says where each came from.
    """
    # kubeadm's own paths count as "not given": they are the last resort anyway, and a runbook that
    # spells them out as defaults must still follow the lab or ETCDCTL_* when those are set
    given = {name: "" if value == KUBEADM_ETCD[name] else value
             for name, value in {"endpoints": endpoints, "cacert": cacert, "cert": cert, "key": key}.items()}
    if lab is None and (lab_name or (not any(given.values()) and os.environ.get(LAB_ENV))):
        lab = _lab(lab_name or os.environ[LAB_ENV])
    from_lab = lab.etcd_params() if lab is not None else {}
    out, sources = {}, {}
    for name, value in given.items():
        if value:
            out[name], sources[name] = value, "parameter"
        elif name in from_lab:
            out[name], sources[name] = from_lab[name], f"lab {lab.name}"
        elif os.environ.get(ETCDCTL_ENV[name]):
            out[name], sources[name] = os.environ[ETCDCTL_ENV[name]], f"${ETCDCTL_ENV[name]}"
        else:
            out[name], sources[name] = KUBEADM_ETCD[name], "kubeadm default"
    distinct = sorted(set(sources.values()))
    out["source"] = distinct[0] if len(distinct) == 1 else ", ".join(f"{k}: {v}" for k, v in sources.items())
    return out


def verify_lab_kubeconfig(lab: Any, kubeconfig: Path | None, context: str | None) -> None:
    """The kubeconfig's server and CA are the lab's own, or KubebookError."""
    import base64
    from kubernetes.config.kube_config import KubeConfigLoader
    import yaml
    if kubeconfig is None:
        raise KubebookError(f"no kubeconfig to check against lab {lab.name}")
    loader = KubeConfigLoader(yaml.safe_load(Path(kubeconfig).read_text()) or {}, active_context=context or None)
    cluster = loader._cluster  # the active context's cluster entry (the loader exposes no public view)
    server = cluster.safe_get("server")
    ca_data = cluster.safe_get("certificate-authority-data")
    ca = base64.b64decode(ca_data) if ca_data else Path(cluster.safe_get("certificate-authority") or "/dev/null") \
        .read_bytes()
    if server != lab.server or ca.strip() != lab.pki.ca_crt.read_bytes().strip():
        raise KubebookError(f"kubeconfig {kubeconfig} does not point at lab {lab.name} "
                            f"(server {server}, lab {lab.server}); nothing was changed")


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


def raw_request(api: client.ApiClient, method: str, path: str, *, body: dict | None = None,
                content_type: str = "application/json", query: dict | None = None,
                timeout: float = 30.0) -> tuple[int, bytes]:
    """One request on ``api``'s own connection pool and credentials, without the generated
    client's (de)serialisation. For bulk writes: the generated client spends about 9 ms of CPU
    per request on this 2-core machine, this path about 1 ms, and the apiserver wants that CPU."""
    cfg = api.configuration
    headers = {"Content-Type": content_type, "Accept": "application/json", **api.default_headers}
    for setting in cfg.auth_settings().values():  # bearer tokens (refreshed by the client's hook)
        if setting.get("in") == "header" and setting.get("value"):
            headers[setting["key"]] = setting["value"]
    url = cfg.host + path + ("?" + urlencode(query) if query else "")
    resp = api.rest_client.pool_manager.request(method, url, headers=headers, timeout=timeout,
                                                body=json.dumps(body).encode() if body is not None else None)
    return resp.status, resp.data


def create_or_keep(create: Callable[..., Any], *args: Any) -> str:
    """Call a client ``create_*`` method; "created", or "exists" when the object is already there (409).

    For objects kubebook creates once and never edits in place, so re-running is safe."""
    try:
        create(*args)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
        return "exists"
