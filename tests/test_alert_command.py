"""Delivery of alert changes to `alerts.command`: JSON on stdin, no secrets, never raises."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from anvil_cli.alerts.delivery import deliver
from anvil_cli.alerts.rules import AlertChange, AlertEngine
from anvil_cli.config.settings import Alerts
from tests.snapshot_support import snapshot


def _change() -> AlertChange:
    (change,) = AlertEngine(Alerts()).evaluate(snapshot(growing=600), 0.0)
    return change


def test_deliver_runs_the_command_with_the_alert_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    command = f"{sys.executable} -c 'import sys; open(sys.argv[1], \"w\").write(sys.stdin.read())' {out}"
    deliver(command, _change()).join(timeout=20)
    got = json.loads(out.read_text())
    assert got["name"] == "queue_depth" and got["change"] == "raised" and got["severity"] == "high"


def test_the_command_does_not_see_the_api_key_or_the_control_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANVIL_API_TOKEN")
    for name in secrets:
        monkeypatch.setenv(name, f"secret-{name}")
    monkeypatch.setenv("ANVIL_TEST_VISIBLE", "yes")
    out = tmp_path / "env.json"
    script = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    deliver(f'{sys.executable} -c "{script}" {out}', _change()).join(timeout=20)
    env = json.loads(out.read_text())
    assert env["ANVIL_TEST_VISIBLE"] == "yes"
    assert not [name for name in secrets if name in env]


def test_a_failing_or_slow_command_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="anvil_cli.alerts.delivery")
    deliver(f"{sys.executable} -c 'import sys; sys.exit(3)'", _change()).join(timeout=20)
    slow = f"{sys.executable} -c 'import time; time.sleep(5)'"  # sleep-ok: the user's command hangs
    deliver(slow, _change(), timeout_s=0.2).join(timeout=20)
    text = caplog.text
    assert "exited 3" in text and "timed out" in text
