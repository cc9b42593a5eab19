"""Alerts delivered to `alerts.webhooks` (anvil_cli/alerts/webhook.py): Slack-shaped JSON posted to a
real HTTP receiver on 127.0.0.1, retried on 503 and 429 (its Retry-After honoured), not on other
4xx; the severity filter; the variables checked at load; the URL and header secrets never logged
nor left in the environment; a receiver that never answers holds up no tick."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.alerts.rules import AlertEngine
from anvil_cli.alerts.slack import slack_escape
from anvil_cli.alerts.webhook import QUEUE_MAX, WebhookSender, resolve_webhooks
from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Alerts, Settings
from anvil_cli.config.vault import configured_secret_names
from anvil_cli.errors import ConfigError
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.monitor import NoScreen, RunMonitor
from anvil_cli.snapshot.state import WorkerInfo
from tests.snapshot_support import engine_state, snapshot

SECRET_PATH = "/services/T000/B000/hook-secret-8c1f"
SECRET_TOKEN = "Bearer tok-secret-51aa"
RUN_ID = "20261205-120000-abcdef"


class Receiver:
    """An HTTP server on 127.0.0.1 answering the first posts from `script` ((status, headers)),
    then 200, recording every post (path, headers, JSON body)."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.posts.append((self.path, dict(self.headers), json.loads(body)))
                    status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(name="receiver")
def fixture_receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """A receiver answering as the test's parameter `script` says (indirect), else always 200."""
    server = Receiver(getattr(request, "param", []))
    yield server
    server.stop()


def _settings(**webhook: Any) -> Settings:
    return Settings.model_validate({"alerts": {"queue_depth": 10, "webhooks": [webhook]}})


def _raise_queue_alert(monitor: RunMonitor, *, end: bool = False) -> None:
    """Two ticks of the real monitor: a backlog that grows raises the queue_depth alert (high);
    with `end`, a third: the run's last snapshot (finished), which flushes the webhooks."""

    def state(ready: int, phase: str = "running") -> Any:
        return engine_state(run_id=RUN_ID, in_flight=2, agent_max=100, queue_depth=ready, phase=phase,
                            workers=(WorkerInfo(0, 4242, True, 2),))  # fmt: skip

    metrics = RunMetrics(total=3, started_at=999.0)
    monitor.observe(state(5), metrics, 1000.0)
    metrics.total = 60  # jobs arrive faster than they finish
    seen = monitor.observe(state(50), metrics, 1001.0)
    assert [c.alert["name"] for c in seen.changes] == ["queue_depth"]
    if end:
        assert monitor.observe(state(50, "finished"), metrics, 1002.0).changes == []


@pytest.mark.parametrize("receiver", [[(503, {}), (429, {"Retry-After": "7"})]], indirect=True)
def test_an_alert_arrives_once_slack_shaped_after_503_and_429(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"HOOK_URL": receiver.url + SECRET_PATH, "HOOK_TOKEN": SECRET_TOKEN}
    settings = _settings(url_env="HOOK_URL", headers={"Authorization": "HOOK_TOKEN"})
    waits: list[float] = []
    sender = WebhookSender(resolve_webhooks(settings.alerts, env.get), sleep=waits.append)
    monitor = RunMonitor(
        settings, NoScreen(), batch_path="/x/b.jsonl", wall_clock=lambda: 1.7e9, webhooks=sender
    )
    _raise_queue_alert(monitor, end=True)  # the last tick waits (bounded) for the queue to empty
    assert sender.pending() == 0
    assert len(receiver.posts) == 3 and waits == [1.0, 7.0]  # back-off, then the receiver's Retry-After
    path, headers, body = receiver.posts[-1]
    assert path == SECRET_PATH and headers["Authorization"] == SECRET_TOKEN
    assert headers["Content-Type"] == "application/json"
    anvil = body["anvil"]
    assert anvil["run_id"] == RUN_ID and anvil["name"] == "queue_depth" and anvil["severity"] == "high"
    assert anvil["change"] == "raised" and anvil["value"] == 58 and anvil["threshold"] == 10
    assert anvil["at"] == 1.7e9 + 1.0 and anvil["message"].startswith("58 jobs waiting")
    assert body["text"] == f"ALERT [high] queue_depth: {anvil['message']} (run {RUN_ID})"
    (block,) = body["blocks"]
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    assert block["text"]["text"].startswith("*ALERT* [high] *queue_depth*: 58 jobs waiting")
    logged = caplog.text + capsys.readouterr().err
    assert SECRET_PATH not in logged and "tok-secret" not in logged


def test_slack_text_is_escaped() -> None:
    assert slack_escape("a < b & c > d") == "a &lt; b &amp; c &gt; d"


@pytest.mark.parametrize("receiver", [[(404, {})]], indirect=True)
def test_a_4xx_is_not_retried_and_its_error_shows_no_secret(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"SLACK_WEBHOOK_URL": receiver.url + SECRET_PATH, "HOOK_TOKEN": SECRET_TOKEN}
    settings = _settings(url_env="SLACK_WEBHOOK_URL", headers={"Authorization": "HOOK_TOKEN"})
    waits: list[float] = []
    sender = WebhookSender(resolve_webhooks(settings.alerts, env.get), sleep=waits.append)
    (change,) = AlertEngine(settings.alerts).evaluate(snapshot(growing=600), 0.0)
    sender.send(change, RUN_ID)
    assert sender.flush(timeout_s=30) == 0
    assert len(receiver.posts) == 1 and waits == []
    assert "webhook 1 (SLACK_WEBHOOK_URL): alert not delivered: HTTP 404" in caplog.text
    logged = caplog.text + capsys.readouterr().err
    assert SECRET_PATH not in logged and "tok-secret" not in logged


def test_each_webhook_gets_the_alerts_of_its_severity(receiver: Receiver) -> None:
    hooks = [{"url": receiver.url + "/default"}, {"url": receiver.url + "/all", "min_severity": "low"},
             {"url": receiver.url + "/high", "min_severity": "high"}]  # fmt: skip
    alerts = Alerts.model_validate({"webhooks": hooks})
    # a growing backlog (high) and every agent busy (low), from the real rules on a real snapshot
    changes = AlertEngine(alerts).evaluate(snapshot(growing=600, in_flight=20, agent_limit=20), 0.0)
    severities = {c.alert["name"]: c.alert["severity"] for c in changes}
    assert severities["queue_depth"] == "high" and severities["agent_utilisation"] == "low"
    sender = WebhookSender(resolve_webhooks(alerts, {}.get), sleep=lambda s: None)
    for change in changes:
        sender.send(change, RUN_ID)
    assert sender.flush(timeout_s=30) == 0
    got: dict[str, set[str]] = {"/default": set(), "/all": set(), "/high": set()}
    for path, _, body in receiver.posts:
        got[path].add(body["anvil"]["name"])
    wanted = {name for name, sev in severities.items() if sev in ("high", "medium")}
    assert got == {"/default": wanted, "/all": set(severities), "/high": {"queue_depth"}}


def test_the_variables_are_checked_at_load(tmp_path: Path) -> None:
    config = tmp_path / "anvil.yaml"
    config.write_text(
        "alerts:\n  webhooks:\n    - url_env: NOT_SET_HOOK\n      headers: {Authorization: NOT_SET_TOKEN}\n"
        "    - url_env: NOT_A_URL\n"
    )
    env = {"NOT_A_URL": "ftp://host/secret-in-value"}
    assert load_settings(config, env=env).alerts.webhooks  # commands that only read (status) load them
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env=env, variables=True)  # `anvil run` and `anvil validate` check them
    text = str(caught.value)
    assert "alerts.webhooks[0].url_env" in text and "NOT_SET_HOOK is not set" in text
    assert "alerts.webhooks[0].headers.Authorization" in text and "NOT_SET_TOKEN is not set" in text
    assert "line 3" in text or ":3" in text
    assert "NOT_A_URL does not hold an http(s) URL" in text and "secret-in-value" not in text
    with pytest.raises(ConfigError, match=r"alerts\.webhooks\[0\]\.url.*not an http\(s\) URL"):
        load_settings(None, env={"ANVIL_ALERTS__WEBHOOKS": "[{url: 'file:///etc/passwd'}]"})


def test_webhooks_from_a_variable_as_flow_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "ANVIL_ALERTS__WEBHOOKS": '[{url_env: HOOK_URL, min_severity: low, timeout_s: 2}, {"url": "http://relay:8080/a"}]',
        "HOOK_URL": "https://hooks.example.com" + SECRET_PATH,
    }
    hooks = load_settings(None, env=env).alerts.webhooks
    assert [(h.url_env, h.url, h.min_severity, h.timeout_s) for h in hooks] == [
        ("HOOK_URL", None, "low", 2.0),
        (None, "http://relay:8080/a", "medium", 5.0),
    ]
    assert [h.label for h in resolve_webhooks(load_settings(None, env=env).alerts, env.get)] == [
        "webhook 1 (HOOK_URL)",
        "webhook 2 (relay)",
    ]
    assert configured_secret_names(["run", "b.jsonl"], env) == ("HOOK_URL",)
    for name, value in env.items():  # the run's monitor reads the URL as the driver holds it (vault)
        monkeypatch.setenv(name, value)
    monitor = RunMonitor(load_settings(None), NoScreen(), batch_path="/x/b.jsonl")
    assert monitor.webhooks is not None
    assert [lane.hook.url for lane in monitor.webhooks.lanes] == [env["HOOK_URL"], "http://relay:8080/a"]
    assert RunMonitor(Settings(), NoScreen(), batch_path="/x/b.jsonl").webhooks is None


def test_the_webhook_variables_are_held_out_of_the_environment(tmp_path: Path) -> None:
    """The `anvil` command's first step (vault.hand_over) takes the named variables out of its
    environment, so no worker or tool it starts has them; the driver still reads them."""
    (tmp_path / "anvil.yaml").write_text(
        "alerts:\n  webhooks:\n    - {url_env: HOOK_URL, headers: {Authorization: HOOK_TOKEN}}\n"
    )
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent("""
        import os, subprocess, sys
        from anvil_cli.config.vault import hand_over, secret
        hand_over()
        child = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.environ))"],
                               capture_output=True, text=True, check=True).stdout
        print(secret("HOOK_URL") is not None, secret("HOOK_TOKEN") is not None,
              "HOOK_URL" in child or "HOOK_TOKEN" in child, "HOOK_URL" in os.environ)
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "ANTHROPIC_"))}
    env.update(HOOK_URL="https://hooks.example.com" + SECRET_PATH, HOOK_TOKEN=SECRET_TOKEN)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["True", "True", "False", "False"]


class Silent:
    """A receiver that takes connections and reads the request, and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.got_request = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if conn.recv(65536):
                self.got_request.set()

    def stop(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept (closing alone would not)
        self.sock.close()
        for conn in self.conns:
            conn.close()
        self.thread.join(timeout=10)


def test_a_receiver_that_never_answers_holds_up_no_tick() -> None:
    silent = Silent()
    try:
        settings = _settings(url=silent.url, timeout_s=300)  # a post would block a tick for minutes
        sender = WebhookSender(resolve_webhooks(settings.alerts, {}.get), sleep=lambda s: None)
        monitor = RunMonitor(settings, NoScreen(), batch_path="/x/b.jsonl", webhooks=sender)
        _raise_queue_alert(monitor)  # the tick returned...
        assert silent.got_request.wait(timeout=30)  # ...while its alert's post hangs, unanswered
        assert sender.pending() == 1 and sender.dropped() == 0
        (change,) = AlertEngine(settings.alerts).evaluate(snapshot(growing=600), 0.0)
        for _ in range(QUEUE_MAX + 3):  # the queue keeps the newest QUEUE_MAX, counting the rest
            sender.send(change, RUN_ID)
        assert sender.dropped() == 3 and sender.pending() == QUEUE_MAX + 1
        assert sender.flush(timeout_s=0) == QUEUE_MAX + 1  # a run's end does not wait past its bound
    finally:
        sender.close()
        silent.stop()
    for lane in sender.lanes:
        assert lane.thread is not None
        lane.thread.join(timeout=30)
        assert not lane.thread.is_alive()
