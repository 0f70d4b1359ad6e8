"""ServiceAccount tokens from the TokenRequest API, used without ever being shown.

A :class:`Token` keeps the JWT private: its ``repr`` and every table show the claims
(subject, audiences, expiry, bound object) and the token's length only. ``token.api_client()``
is an ApiClient that sends it as ``Authorization: Bearer`` to the same server and CA as the
client that requested it, as the course's ``curl -H "Authorization: Bearer ..."`` does.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field

import pandas as pd
from kubernetes import client

from ..connect import create_or_keep
from ..errors import KubebookError
from ..safety import masked
from .access import names, request

BOUND_KINDS = ("", "Pod", "Secret", "Node")


def ensure_service_account(api: client.ApiClient, namespace: str, name: str) -> str:
    return create_or_keep(client.CoreV1Api(api).create_namespaced_service_account, namespace,
                          {"metadata": {"name": name}})


@dataclass(frozen=True)
class Token:
    namespace: str
    service_account: str
    expiration: dt.datetime
    audiences: tuple[str, ...]
    _value: str = field(repr=False)
    _host: str = field(repr=False, default="")
    _ca: str | None = field(repr=False, default=None)

    def __repr__(self) -> str:
        return (f"Token(serviceaccount={self.namespace}/{self.service_account}, expires={self.expiration:%Y-%m-%d %H:%M:%S} "
                f"UTC, audiences={list(self.audiences)}, value={masked(self._value)})")

    __str__ = __repr__

    def claims(self) -> dict:
        """The JWT's payload (who, for whom, until when, bound to what). The signature is not included."""
        payload = self._value.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    def summary(self) -> pd.DataFrame:
        """What the token says about itself, as a table; the token itself appears only as its length."""
        c = self.claims()
        k8s = c.get("kubernetes.io", {})
        bound = next(((kind, (k8s.get(kind.lower()) or {}).get("name", "")) for kind in ("Pod", "Secret", "Node")
                      if k8s.get(kind.lower())), ("", ""))
        when = lambda s: dt.datetime.fromtimestamp(s, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if s else ""
        rows = {"subject (user name)": c.get("sub", ""), "audiences": ", ".join(c.get("aud", [])),
                "issuer": c.get("iss", ""), "issued at (UTC)": when(c.get("iat")),
                "expires (UTC, from the API)": f"{self.expiration:%Y-%m-%d %H:%M:%S}",
                "lifetime (s)": (c.get("exp", 0) - c.get("iat", 0)),
                "bound to": f"{bound[0]}/{bound[1]}" if bound[0] else "(not bound: valid until it expires)",
                "token": masked(self._value)}
        return pd.DataFrame({"field": list(rows), "value": list(rows.values())})

    def api_client(self) -> client.ApiClient:
        """An ApiClient authenticating with this token only (no client certificate)."""
        config = client.Configuration()
        config.host = self._host
        config.ssl_ca_cert = self._ca
        config.verify_ssl = bool(self._ca)
        config.api_key = {"authorization": self._value}
        config.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(config)


def summary(token: Token | None) -> pd.DataFrame:
    """``token.summary()``, or an empty table in a dry run (no token was requested)."""
    return token.summary() if token is not None else pd.DataFrame(columns=["field", "value"])


def probe(token: Token | None, paths) -> pd.DataFrame:
    """GET each path with the token alone (the course's ``curl -H "Authorization: Bearer ..."``)."""
    from .access import probe as probe_with
    if token is None:
        return pd.DataFrame(columns=["GET", "status", "allowed", "message"])
    return probe_with(token.api_client(), paths)


def whoami(token: Token | None) -> pd.DataFrame:
    """Who the apiserver takes the token's bearer to be (SelfSubjectReview)."""
    from .access import whoami as whoami_with
    return whoami_with(token.api_client()) if token is not None else pd.DataFrame(columns=["user", "groups"])


def request_token(api: client.ApiClient, namespace: str, service_account: str, *, duration_seconds: int = 3600,
                  audiences=(), bound_kind: str = "", bound_name: str = "") -> Token:
    """A short-lived token for ``namespace/service_account`` (what `kubectl create token` does).

    ``bound_kind``/``bound_name`` (Pod, Secret or Node) tie the token to that object: it stops
    working when the object is deleted. ``audiences`` is a list or a comma-separated string
    (empty: the apiserver's own audience). The expiry is the one the server returns (it may
    shorten or lengthen the requested duration; the minimum is 10 minutes).
    """
    if bound_kind not in BOUND_KINDS:
        raise KubebookError(f"bound_kind {bound_kind!r}: use one of Pod, Secret, Node (or empty)")
    spec: dict = {"expirationSeconds": duration_seconds, "audiences": names(audiences) or None}
    if bound_kind:
        if not bound_name:
            raise KubebookError(f"bound_kind {bound_kind} needs bound_name")
        core = client.CoreV1Api(api)
        obj = {"Pod": lambda: core.read_namespaced_pod(bound_name, namespace),
               "Secret": lambda: core.read_namespaced_secret(bound_name, namespace),
               "Node": lambda: core.read_node(bound_name)}[bound_kind]()
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": bound_kind, "name": bound_name, "uid": obj.metadata.uid}
    # read as raw JSON: the token never sits in a typed model whose repr could print it
    code, body = request(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
                         {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                          "spec": {k: v for k, v in spec.items() if v is not None}})
    if code != 201:
        raise KubebookError(f"TokenRequest for {namespace}/{service_account} refused ({code}): {body.get('message')}")
    status = body["status"]
    expiration = dt.datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))
    audiences_returned = tuple(body["spec"].get("audiences") or ())
    return Token(namespace, service_account, expiration, audiences_returned, status["token"],
                 api.configuration.host, api.configuration.ssl_ca_cert)
