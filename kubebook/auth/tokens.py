"""ServiceAccount tokens from the TokenRequest API, used without ever being shown.

    create_service_account(plan, "kubebook-auth", "luffy-pods-admin")   # a step: created, deleted at clean-up
    token = create_token(plan, "kubebook-auth", "luffy-pods-admin", duration_seconds=600)   # a step too
    probe(token, ["/api/v1/nodes"])                                     # a request with the token alone

A :class:`Token` keeps the JWT private: its ``repr`` and every table show the claims (subject,
audiences, expiry, bound object) and the token's length only, and the value is registered with
:mod:`kubebook.safety`, so it is masked wherever it might still appear. ``token.api_client()`` sends
it as ``Authorization: Bearer`` to the same server, verifying it with the same CA as the client that
requested it, as the course's ``curl --cacert ca.crt -H "Authorization: Bearer ..."`` does: a token
is never sent to a server that was not verified.
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
from ..objects import Ref
from ..plan import Plan
from ..safety import masked, register_secret
from .access import names, request, require

BOUND_KINDS = ("", "Pod", "Secret", "Node")


def ensure_service_account(api: client.ApiClient, namespace: str, name: str) -> str:
    """Create the ServiceAccount, or keep it (library use without a plan)."""
    return create_or_keep(client.CoreV1Api(api).create_namespaced_service_account, namespace,
                          {"metadata": {"name": name}})


def create_service_account(plan: Plan, namespace: str, name: str) -> str | None:
    """A step of ``plan``: the ServiceAccount created (deleted at clean-up), or kept as it is."""
    if require(plan, f"serviceaccount-{name}", [("get", "serviceaccounts", namespace, name),
                                                 ("create", "serviceaccounts", namespace, "")]):
        return None
    return plan.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}, namespace,
                       step=f"serviceaccount-{name}", command=f"kubectl -n {namespace} create serviceaccount {name}")


@dataclass(frozen=True)
class Token:
    namespace: str
    service_account: str
    expiration: dt.datetime
    audiences: tuple[str, ...]
    _value: str = field(repr=False)
    _host: str = field(repr=False, default="")
    _ca: str | None = field(repr=False, default=None)     # CA file; None: the system's trust store
    _server_name: str | None = field(repr=False, default=None)

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
        rows = {"subject (user name)": c.get("sub", ""), "audiences": ", ".join(c.get("aud", [])),
                "issuer": c.get("iss", ""), "issued at (UTC)": _utc(c.get("iat")),
                "expires (UTC, from the API)": f"{self.expiration:%Y-%m-%d %H:%M:%S}",
                "lifetime (s)": (c.get("exp", 0) - c.get("iat", 0)),
                "bound to": f"{bound[0]}/{bound[1]}" if bound[0] else "(not bound: valid until it expires)",
                "token": masked(self._value)}
        return pd.DataFrame({"field": list(rows), "value": list(rows.values())})

    def api_client(self) -> client.ApiClient:
        """An ApiClient authenticating with this token only (no client certificate), verifying the server."""
        config = client.Configuration()
        config.host = self._host
        config.verify_ssl = True  # never off: the CA of the requesting client, else the system's trust store
        config.ssl_ca_cert = self._ca
        config.tls_server_name = self._server_name
        config.api_key = {"authorization": self._value}
        config.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(config)


def _utc(seconds) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if seconds else ""


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


def _verified_tls(api: client.ApiClient) -> tuple[str | None, str | None]:
    """The CA file and TLS server name ``api`` verifies the apiserver with; an error if it does not verify."""
    cfg = api.configuration
    if not cfg.verify_ssl:
        raise KubebookError("this kubeconfig turns TLS verification off (insecure-skip-tls-verify): kubebook sends "
                            "no token to a server it cannot verify; give the cluster's CA (certificate-authority)")
    return cfg.ssl_ca_cert, getattr(cfg, "tls_server_name", None)


def request_token(api: client.ApiClient, namespace: str, service_account: str, *, duration_seconds: int = 3600,
                  audiences=(), bound_kind: str = "", bound_name: str = "") -> Token:
    """A short-lived token for ``namespace/service_account`` (what `kubectl create token` does), now.

    ``bound_kind``/``bound_name`` (Pod, Secret or Node) tie the token to that object: it stops
    working when the object is deleted. ``audiences`` is a list or a comma-separated string
    (empty: the apiserver's own audience). The expiry is the one the server returns (it may
    shorten or lengthen the requested duration; the minimum is 10 minutes). Runbooks use
    :func:`create_token`, which makes this a step of their plan.
    """
    if bound_kind not in BOUND_KINDS:
        raise KubebookError(f"bound_kind {bound_kind!r}: use one of Pod, Secret, Node (or empty)")
    ca, server_name = _verified_tls(api)
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
    register_secret(status["token"])  # masked in every output from now on, whatever prints it
    expiration = dt.datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))
    audiences_returned = tuple(body["spec"].get("audiences") or ())
    return Token(namespace, service_account, expiration, audiences_returned, status["token"],
                 api.configuration.host, ca, server_name)


def create_token(plan: Plan, namespace: str, service_account: str, *, duration_seconds: int = 3600, audiences=(),
                 bound_kind: str = "", bound_name: str = "") -> Token | None:
    """A step of ``plan``: request a token (:func:`request_token`). The dry run lists the TokenRequest;
    acting returns the :class:`Token`, whose value no table or log shows."""
    audience_list = names(audiences)
    bound = f", bound to {bound_kind} {bound_name}" if bound_kind else ""
    flags = "".join(f" --audience={a}" for a in audience_list) + \
        (f" --bound-object-kind={bound_kind} --bound-object-name={bound_name}" if bound_kind else "")
    if require(plan, "token", [("create", "serviceaccounts/token", namespace, service_account)]):
        return None
    return plan.step("token", f"request a {duration_seconds}s token for ServiceAccount {namespace}/{service_account}"
                              f"{bound} (TokenRequest; used by the next steps, never shown)",
                     lambda: request_token(plan.api, namespace, service_account, duration_seconds=duration_seconds,
                                           audiences=audience_list, bound_kind=bound_kind, bound_name=bound_name),
                     command=f"kubectl -n {namespace} create token {service_account} --duration={duration_seconds}s"
                             + flags, touches=[Ref("ServiceAccount", service_account, namespace)])
