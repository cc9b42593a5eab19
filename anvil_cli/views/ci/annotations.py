"""A run's failures as GitHub Actions annotations: `::error title=…::message` workflow commands
for the first failed jobs, and a `::warning` when the pass rate of the checks is under
`--fail-under`. The runner reads workflow commands from a step's stdout and stderr alike; they
are written to stderr, so `--json` on stdout stays one JSON document.

GitHub's escaping: `%`, CR and LF in a message as `%25`, `%0D`, `%0A`; in a property also `:`
and `,` as `%3A`, `%2C` (actions/toolkit, `command.ts`). Other control characters and bidi
overrides are written as escapes (`\\x1b`) first. A message is one line, so nothing a model
wrote can end the command or start another."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from anvil_cli.input_limits import plain
from anvil_cli.views.ci.jobs import CHECKS_FAILED, ERRORED, CiJob

FIRST_FAILURES = 10
MESSAGE_CHARS = 1000
_UNSAFE = re.compile(
    "[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def escape_data(text: str) -> str:
    """A workflow command's message."""
    text = _UNSAFE.sub(lambda m: plain(m.group()), text)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (`title=`)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, title: str, message: str) -> str:
    """`::kind title=TITLE::MESSAGE`, escaped."""
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return f"::{kind} title={escape_property(title)}::{escape_data(message)}"


def _failure(job: CiJob) -> str:
    if job.verdict == ERRORED:
        status = f" (HTTP {job.status_code})" if job.status_code is not None else ""
        return command("error", f"Anvil job {job.id} failed", f"{job.error_type}{status}: {job.error}")
    details = "\n".join(f"{c.name} ({c.kind}): {c.detail or 'failed'}" for c in job.failed_checks)
    return command("error", f"Anvil job {job.id} failed its checks", details)


def workflow_commands(jobs: Iterable[CiJob], summary: Mapping[str, Any]) -> list[str]:
    """The workflow commands for a run: an `::error` for each of the first failed jobs (a job
    that failed, or whose answer failed a check), then how many more, and a `::warning` when
    the checks' pass rate is under `--fail-under` (`summary["fail_under"]`)."""
    failed = [j for j in jobs if j.verdict in (ERRORED, CHECKS_FAILED)]
    lines = [_failure(j) for j in failed[:FIRST_FAILURES]]
    if len(failed) > FIRST_FAILURES:
        more = len(failed) - FIRST_FAILURES
        lines.append(
            command("error", "Anvil", f"{more} more failed job(s): see the JUnit report or anvil report")
        )
    gate = summary.get("fail_under")
    if isinstance(gate, Mapping) and gate.get("below"):
        lines.append(command("warning", "Anvil checks under --fail-under", str(gate.get("message") or "")))
    return lines
