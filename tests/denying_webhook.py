"""A validating admission webhook that refuses every Pod created in one namespace (tests only).

It serves HTTPS on 127.0.0.1 with a certificate from a CA made for it, and registers itself with a
ValidatingWebhookConfiguration whose namespaceSelector matches that namespace alone, so nothing
else on the lab is affected; both are removed on exit.
"""
from __future__ import annotations

import base64
import contextlib
import json
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from kubernetes import client

from conftest import until_pods_refused

from kubebook import pki

MESSAGE = "kubebook test webhook: Pods are not allowed in this namespace"


class _Deny(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": {"uid": review["request"]["uid"], "allowed": False,
                                        "status": {"code": 403, "message": MESSAGE}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def refusing_pods(api, namespace: str, name: str = "kubebook-test-deny-pods") -> Iterator[str]:
    """While inside, every Pod CREATE in ``namespace`` is refused with :data:`MESSAGE`."""
    ca = pki.new_ca("kubebook test webhook CA")
    leaf = pki.new_leaf(ca, "127.0.0.1", usages=pki.SERVER, ips=("127.0.0.1",))
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        cert.write_bytes(leaf.cert_pem)
        key.write_bytes(leaf.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        admission = client.AdmissionregistrationV1Api(api)
        admission.create_validating_webhook_configuration({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{"name": "deny-pods.kubebook.test", "admissionReviewVersions": ["v1"],
                          "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 5,
                          "clientConfig": {"url": f"https://127.0.0.1:{server.server_port}/deny",
                                           "caBundle": base64.b64encode(ca.cert_pem).decode()},
                          "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                     "resources": ["pods"], "scope": "Namespaced"}],
                          "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}]})
        try:
            # the apiserver picks a new configuration up within a second or so
            until_pods_refused(api, namespace, MESSAGE, what="the test webhook")
            yield MESSAGE
        finally:
            admission.delete_validating_webhook_configuration(name)
            server.shutdown()
            server.server_close()
