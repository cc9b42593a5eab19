"""Choosing where workers run: without `--backend ray` nothing imports Ray (it costs those who do
not use it nothing); with it, a missing extra is a usage error before anything is written."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from anvil_cli.errors import UsageError
from anvil_cli.exitcodes import ExitCode
from anvil_cli.session.preflight import require_ray
from tests.engine_support import anvil_cmd, cli_env, run_cli, write_jsonl_batch


def test_a_local_run_never_imports_ray(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    argv = [sys.executable, "-X", "importtime", *anvil_cmd("run", str(batch), "--simulate", "-q")[1:]]
    proc = subprocess.run(argv, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.OK, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "import time:" in line]
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines}
    assert "anvil_cli.engine.worker.loop" in imported  # -X importtime reaches the fork server's imports too
    assert not {m for m in imported if m == "ray" or m.startswith("ray.")}
    # nor the OpenTelemetry SDK without OTEL_* variables (the anthropic SDK itself needs the API)
    assert not {m for m in imported if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))}


def test_without_the_extra_backend_ray_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else object())
    with pytest.raises(UsageError, match=r"pip install 'anvil-cli\[ray\]'"):
        require_ray()


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    proc = run_cli("run", str(batch), "--simulate", "--backend", "kubernetes", cwd=tmp_path)
    assert proc.returncode == ExitCode.BAD_INPUT and "--backend" in proc.stderr
    assert not (tmp_path / ".anvil" / "journal.sqlite").exists()  # nothing written
