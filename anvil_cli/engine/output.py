"""Results files: one JSON line per job in batch order, written atomically with mode 0600."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from anvil_cli.engine.journal.store import PENDING, RUNNING, Journal
from anvil_cli.policy.checks.schema import parse_answer


def result_line(row: dict[str, Any]) -> dict[str, Any]:
    """The public shape of one job's result; `endpoint` (after `model`) only on a run with named
    endpoints (`endpoints:`), so a run without them writes the lines it always wrote."""
    state = row["state"]
    status = "pending" if state in (PENDING, RUNNING) else state
    job = row["job"]
    line = {
        "id": row["id"],
        "status": status,
        "model": row["model"] or job.get("model"),
        "output": row["output"],
        "stop_reason": row["stop_reason"],
        "usage": row["usage"],
        "cost_usd": round(row["cost_usd"] or 0.0, 8),
        "attempts": row["attempts"],
        "latency_s": None if row["latency_s"] is None else round(row["latency_s"], 4),
        "error": row["error"] if status == "failed" else None,
        "tool_errors": row["tool_errors"],  # failed tool calls (a job may still succeed)
        "tool_error": row["tool_error"],  # the last: {tool, kind, message}
        "metadata": job.get("metadata") or {},
    }
    _add_checks(line, row, job)
    endpoint = row.get("endpoint")
    if not endpoint:
        return line
    at = list(line).index("model") + 1
    items = list(line.items())
    return dict([*items[:at], ("endpoint", endpoint), *items[at:]])


def _add_checks(line: dict[str, Any], row: dict[str, Any], job: dict[str, Any]) -> None:
    """`variant`, `output_json` (the answer parsed, on a job with an output schema) and `checks`
    (`CheckRecord.to_json()`), each only on a job that has it, so other lines read as ever."""
    if job.get("variant") is not None:
        line["variant"] = job["variant"]
    if job.get("output_schema") is not None:  # the parsed answer; null unless it matched the schema
        value, error = parse_answer(row["output"]) if line["status"] == "succeeded" else (None, "")
        line["output_json"] = value if error is None else None
    if row.get("checks") is not None:
        line["checks"] = row["checks"]


def secure_write_lines(path: Path, lines: Iterable[str]) -> int:
    """Write to a temp file beside `path` (0600), fsync, then rename over it: all or nothing."""
    path = path.expanduser()
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    count = 0
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line)
                fh.write("\n")
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return count


def iter_result_lines(journal: Journal, run_id: str) -> Iterator[str]:
    for row in journal.iter_results(run_id):
        yield json.dumps(result_line(row), ensure_ascii=False)


def write_results(journal: Journal, run_id: str, path: Path) -> int:
    """Export a run's results from the journal; returns the number of lines written."""
    return secure_write_lines(path, iter_result_lines(journal, run_id))


def unwritten_message(exc: OSError, run_id: str, path: Path, state_dir: Path) -> str:
    """What to say when a run's results file cannot be written (disk full, no file descriptor
    left, permission denied): why, and the command that writes it from the journal."""
    reason = exc.strerror or type(exc).__name__
    command = shlex.join(["anvil", "export", run_id, "-o", str(path), "--state-dir", str(state_dir)])
    return (
        f"the results could not be written to {path} ({reason}); every result is in the journal:"
        f" write them with `{command}`"
    )
