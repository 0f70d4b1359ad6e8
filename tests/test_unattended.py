"""Retries for transient failures only, and one masked alert after the last attempt."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import fixture_books
from kubebook import cli, records, unattended


class Webhook:
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                received.append({"content-type": self.headers.get("Content-Type"),
                                 "body": json.loads(self.rfile.read(length))})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def books(tmp_path, monkeypatch):
    root = fixture_books.make(tmp_path / "runbooks")
    monkeypatch.setenv("KUBEBOOK_RUNBOOKS", str(root))
    monkeypatch.setenv("KUBEBOOK_RUNS_ROOT", str(tmp_path / "records"))
    return root


@pytest.mark.parametrize("ename, evalue, expected", [
    ("ConnectionRefusedError", "[Errno 111] Connection refused", True),
    ("MaxRetryError", "HTTPSConnectionPool(host='127.0.0.1', port=1): Max retries exceeded", True),
    ("ApiException", "(503)\nReason: Service Unavailable", True),
    ("ApiException", "(429)\nReason: Too Many Requests", True),
    ("StepFailed", "step drain failed: (500)\nReason: Internal Server Error", True),
    ("WaitTimeout", "nodes Ready: not within 60s", True),
    ("_InactiveRpcError", "status = StatusCode.UNAVAILABLE", True),
    ("ApiException", "(403)\nReason: Forbidden", False),
    ("ApiException", "(404)\nReason: Not Found: the connection refused", False),
    ("ConfirmationRequired", "confirm='x' does not name the node 'k8s-master'; nothing was changed", False),
    ("ParameterError", "parameter timeout: 'x' is not a valid float", False),
    ("KeyError", "'spec'", False),
])
def test_only_failures_that_may_pass_are_transient(ename, evalue, expected):
    assert unattended.transient(ename, evalue) is expected


def _ran(marker) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_a_transient_failure_is_retried_then_one_alert_is_posted(books, tmp_path, webhook, capsys):
    marker = tmp_path / "ran"
    code = cli.main(["run", "demo/fail", "-p", "marker", str(marker), "--output-dir", str(tmp_path / "out"),
                     "--no-progress", "--retries", "2", "--retry-delay", "0", "--notify", webhook.url])
    assert code == 1
    assert _ran(marker) == 3                                      # the first attempt and two retries
    attempts = records.select(runbook="demo/fail")
    assert [r.attempt for r in attempts] == [1, 2, 3] and all(r.exit_code == 1 for r in attempts)
    [message] = webhook.received
    body = message["body"]
    assert message["content-type"] == "application/json"
    assert (body["runbook"], body["status"], body["exit_code"], body["attempts"]) == ("demo/fail", "failed", 1, 3)
    assert body["record"] == attempts[-1].path and "Connection refused" in body["error"]
    assert "retrying" in capsys.readouterr().err


@pytest.mark.parametrize("extra, error", [(["-p", "nope", "1"], "unknown parameter"),
                                          (["-p", "error", "ConfirmationRequired"], "ConfirmationRequired")])
def test_bad_input_and_a_refused_confirm_are_not_retried(books, tmp_path, webhook, extra, error):
    marker = tmp_path / "ran"
    code = cli.main(["run", "demo/fail", "-p", "marker", str(marker), *extra, "--output-dir", str(tmp_path / "out"),
                     "--no-progress", "--retries", "2", "--retry-delay", "0", "--notify", webhook.url])
    [message] = webhook.received
    assert message["body"]["attempts"] == 1 and error in message["body"]["error"]
    if extra[1] == "nope":
        assert code == 2 and _ran(marker) == 0 and message["body"]["status"] == "bad input"
    else:  # refused inside the kernel, before any step: bad input too
        assert code == 2 and _ran(marker) == 1


def test_success_alerts_only_when_asked(books, tmp_path, webhook):
    argv = ["run", "demo/table", "--output-dir", str(tmp_path / "out"), "--no-progress", "--notify", webhook.url]
    assert cli.main(argv) == 0 and webhook.received == []
    assert cli.main([*argv, "--notify-on", "always"]) == 0
    assert [m["body"]["status"] for m in webhook.received] == ["ok"]


def test_the_alert_is_masked(books, tmp_path):
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    outcome = unattended.Outcome("demo/x", 1, "failed", 1, None, f"Unauthorized: Bearer {jwt} password=hunter2")
    text = json.dumps(unattended.summary(outcome))
    assert jwt not in text and "hunter2" not in text and "Unauthorized" in text


def test_the_webhook_url_may_come_from_a_file(tmp_path):
    secret = tmp_path / "url"
    secret.write_text("http://127.0.0.1:1/hook\n")
    assert unattended.notify_url(f"@{secret}") == "http://127.0.0.1:1/hook"
    assert unattended.send("file:///etc/passwd", {}) != "sent"
    assert unattended.send("http://127.0.0.1:1/closed", {}) != "sent"   # an alert that fails never raises
