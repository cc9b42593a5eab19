"""Shared helpers for engine tests: batches, configs, running `anvil run` in or out of process."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from anvil_cli.config.load import load_settings
from anvil_cli.session.runner import RunOptions, RunReport, execute_run

MODEL = "claude-haiku-4-5"


def write_jsonl_batch(path: Path, prompts: Iterable[str], **job_fields: Any) -> Path:
    """One Anvil-shaped job per prompt, ids job-0000..."""
    with path.open("w") as fh:
        for i, prompt in enumerate(prompts):
            job = {"id": f"job-{i:04d}", "prompt": prompt, "model": MODEL, "max_tokens": 64, **job_fields}
            fh.write(json.dumps(job) + "\n")
    return path


def write_jobs(path: Path, jobs: list[dict[str, Any]]) -> Path:
    with path.open("w") as fh:
        for job in jobs:
            fh.write(json.dumps({"model": MODEL, "max_tokens": 64, **job}) + "\n")
    return path


def write_config(path: Path, base_url: str, **sections: Any) -> Path:
    """An anvil.yaml pointing at the simulator with fast, test-friendly defaults."""
    cfg: dict[str, Any] = {
        "provider": {"base_url": base_url, "timeout_s": 30},
        "scaling": {"workers": 2, "max_agents": 20, "max_concurrent_jobs": 20, "min_agents": 1},
        "rate_limits": {"default": {"requests_per_minute": 60000, "burst_size": 1000}},
        "retries": {"max_attempts": 5, "backoff_base_s": 0.01, "backoff_max_s": 0.2},
        "run": {"grace_period_s": 5, "progress_interval_s": 60},
        "state_dir": str(path.parent / ".anvil"),
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(name), dict):
            cfg[name] = {**cfg[name], **value}
        else:
            cfg[name] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_inprocess(config: Path, batch: Path, output: Path | None = None, **opts: Any) -> RunReport:
    settings = load_settings(config, env={})
    return execute_run(settings, RunOptions(batch=batch, output=output, api_key="test-key", **opts))


def cli_env(secret: str = "test-key") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "ANTHROPIC_"))}
    env["ANTHROPIC_API_KEY"] = secret
    env["NO_COLOR"] = "1"
    return env


def anvil_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "anvil_cli", *args]


def run_cli(
    *args: str, cwd: Path, timeout: float = 60, secret: str = "test-key"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        anvil_cmd(*args),
        cwd=cwd,
        env=cli_env(secret),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def invoke_cli(
    *args: str, cwd: Path | None = None, secret: str = "test-key"
) -> subprocess.CompletedProcess[str]:
    """`anvil ARGS` in this process (typer's runner), in `cwd` (default: the current directory,
    each test's own, see conftest), shaped like `run_cli`'s answer. For commands that read or
    refuse and whose test is not about the process itself: it saves a CLI start-up (its imports,
    seconds of CPU on a loaded machine). An exception the command let escape is a traceback on
    stderr and exit 1, as the real process would show it, so "no traceback" assertions keep
    their meaning."""
    from typer.testing import CliRunner

    from anvil_cli.cli import app

    env = {name: None for name in os.environ if name.startswith(("ANVIL_", "ANTHROPIC_"))}
    with contextlib.chdir(cwd or Path.cwd()):
        result = CliRunner().invoke(
            app, list(args), env={**env, "ANTHROPIC_API_KEY": secret, "NO_COLOR": "1"}
        )
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exc_info[1], SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["anvil", *args], result.exit_code, result.stdout, stderr)


def read_results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def journal_query(state_dir: Path, sql: str) -> list[tuple[object, ...]]:
    """Read a live run's journal from outside it (no rows while it does not exist yet)."""
    path = state_dir / "journal.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


def succeeded_jobs(state_dir: Path) -> int:
    rows = journal_query(state_dir, "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'")
    return int(rows[0][0]) if rows else 0


def requeued_from_lost_workers(state_dir: Path) -> int:
    """Jobs taken back from workers that died: the only ones a run may pay for twice (a call in
    flight, or answered and not yet reported, when its worker went)."""
    sql = "SELECT COALESCE(SUM(json_extract(data_json, '$.jobs')), 0) FROM events WHERE kind = 'worker_died'"
    rows = journal_query(state_dir, sql)
    return int(rows[0][0]) if rows else 0


def live_pids(*, group: int | None = None, session: int | None = None) -> set[int]:
    """Live (not zombie) processes of process group `group` or session `session`, from /proc
    (a run started in a group or session of its own: never other runs' processes)."""
    field, wanted = (2, group) if group is not None else (3, session)  # stat's pgrp, session
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[field]) == wanted and fields[0] != "Z":
            members.add(int(entry.name))
    return members
