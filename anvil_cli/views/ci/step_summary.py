"""A run as markdown for a GitHub Actions step summary (the file `GITHUB_STEP_SUMMARY` names):
its counts, cost, p95 job time, the pass rate of its checks, its first failures and its most
expensive jobs. Numbers come from the run's summary (`session/finish.py`, from the journal);
the failures and costs, job by job, from the journal.

Job text comes from models and servers: `md_text` makes it one inert line of a table cell
(markdown punctuation backslash-escaped, `<`, `>` and `&` as entities so no HTML gets through,
line breaks and control characters escaped, long text cut)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from anvil_cli.engine.journal.store import Journal, RunRow
from anvil_cli.input_limits import plain
from anvil_cli.views.ci.jobs import CHECKS_FAILED, ERRORED, CiJob, batch_name, ci_jobs

FIRST_FAILURES = 10
COSTLIEST = 5
CELL_CHARS = 300
_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def md_text(text: str, limit: int = CELL_CHARS) -> str:
    """`text` as one line of markdown that renders as the text itself, in a table cell too."""
    text = plain(text)  # line breaks, controls, bidi overrides: as escapes (`\n`), on one line
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_PUNCT.sub(r"\\\1", text)


def _usd(value: Any) -> str:
    usd = float(value or 0)
    return f"${usd:.4f}" if usd >= 0.01 or usd == 0 else f"${usd:.6f}"


def _secs(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f} s"


def _failure_text(job: CiJob) -> str:
    if job.verdict == ERRORED:
        return f"{job.error_type}: {job.error}"
    return "; ".join(f"check {c.name}: {c.detail or 'failed'}" for c in job.failed_checks)


def _checks_line(summary: Mapping[str, Any]) -> list[str]:
    checks = summary.get("checks")
    if not isinstance(checks, Mapping) or not checks.get("checked"):
        return []
    rate = checks.get("pass_rate")
    line = f"**Checks:** {checks['passed']} of {checks['checked']} answers passed"
    line += f" ({rate:.1%})" if isinstance(rate, int | float) else ""
    gate = summary.get("fail_under")
    if isinstance(gate, Mapping):
        verdict = "**below**" if gate.get("below") else "met"
        line += f"; --fail-under {float(gate['rate']):.1%}: {verdict}"
    return [line, ""]


def step_summary(journal: Journal, run: RunRow, summary: Mapping[str, Any]) -> str:
    """The markdown of one run (`summary`: the run's `--json` summary)."""
    counts = summary.get("counts") or {}
    job_time = summary.get("job_time_s") or {}
    state = summary.get("state") or run.state
    lines = [
        f"### Anvil: {md_text(batch_name(run))} ({md_text(str(state))})",
        "",
        f"Run `{plain(run.id).replace('`', '')}`",
        "",
        "| Jobs | Succeeded | Failed | Pending | Cost | p95 job time |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {counts.get('total', 0)} | {counts.get('succeeded', 0)} | {counts.get('failed', 0)}"
        f" | {counts.get('pending', 0)} | {_usd(summary.get('run_cost_usd'))}"
        f" | {_secs(job_time.get('p95'))} |",
        "",
        *_checks_line(summary),
    ]
    jobs = list(ci_jobs(journal, run.id))
    failed = [j for j in jobs if j.verdict in (ERRORED, CHECKS_FAILED)]
    if failed:
        lines += [f"#### Failures ({len(failed)})", "", "| Job | Error |", "|---|---|"]
        lines += [f"| {md_text(j.id, 120)} | {md_text(_failure_text(j))} |" for j in failed[:FIRST_FAILURES]]
        if len(failed) > FIRST_FAILURES:
            lines.append(f"| … | and {len(failed) - FIRST_FAILURES} more |")
        lines.append("")
    costly = sorted((j for j in jobs if j.cost_usd > 0), key=lambda j: (-j.cost_usd, j.id))[:COSTLIEST]
    if costly:
        lines += ["#### Most expensive jobs", "", "| Job | Model | Cost | Time |", "|---|---|---:|---:|"]
        lines += [
            f"| {md_text(j.id, 120)} | {md_text(j.model, 80)} | {_usd(j.cost_usd)} | {_secs(j.latency_s)} |"
            for j in costly
        ]
        lines.append("")
    return "\n".join(lines) + "\n"
