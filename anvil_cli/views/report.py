"""`anvil report`: one self-contained HTML file of a run, from the journal, for any run (going,
finished, stopped or interrupted): the live page's own HTML, CSS and JavaScript and the vendored
uPlot, inlined, with the run's data embedded as JSON. It opens offline (a CI artifact, a file
attached to a pull request) and loads nothing: its Content-Security-Policy allows only its own
inline scripts and styles, by hash, and no connection at all.

The data: the run's status (`status_view.status_json`, less the governor's raw state; its
`checks`, how the answers fared, shown in the page's Checks table when the run has any), its
samples (thinned to `series.MAX_POINTS`), every alert raised and cleared, and its failed jobs
(the first `MAX_FAILURES`, their errors only: no prompt, no output), and its jobs whose tool calls
failed (the first `MAX_FAILURES`, each with its last tool error). The token is never in it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from anvil_cli.engine.journal.store import FAILED, Journal
from anvil_cli.engine.output import secure_write_lines
from anvil_cli.errors import UsageError
from anvil_cli.snapshot.series import MAX_POINTS
from anvil_cli.snapshot.status import status_json
from anvil_cli.views.web import PAGE, read

__all__ = ["MAX_FAILURES", "build_report", "default_name", "render_html", "report_data", "write_report"]

MAX_FAILURES: Final = 1_000
MAX_MESSAGE_CHARS: Final = 2_000
REPORT_VERSION: Final = 1
UPLOT_VERSION: Final = "1.6.32"  # anvil_cli/views/web/vendor/VERSION

# what the page links to, and what the report puts in its place
_STYLES: Final = ("uPlot.min.css", "app.css")
_SCRIPTS: Final = ("uPlot.iife.min.js", "charts.js", "app.js")
_CLOSERS: Final = re.compile(r"</(script|style)|<!--", re.IGNORECASE)


def _failure(row: dict[str, Any]) -> dict[str, Any]:
    error = row["error"] or {}
    message = str(error.get("message") or "")
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "…"
    return {
        "id": row["id"],
        "model": row["model"] or row["job"].get("model"),
        "type": error.get("type"),
        "status_code": error.get("status_code"),
        "message": message,
        "attempts": row["attempts"],
        "finished_at": row["finished_at"],
    }


def _failures(journal: Journal, run_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in journal.iter_results(run_id):
        if row["state"] == FAILED:
            out.append(_failure(row))
            if len(out) >= MAX_FAILURES:
                break
    return out


def _tool_error_jobs(journal: Journal, run_id: str) -> tuple[list[dict[str, Any]], int]:
    """(the first `MAX_FAILURES` jobs with failed tool calls, with each one's last, how many jobs
    had any): from the jobs' attempt logs (`attempts.tool_errors_of`)."""
    out: list[dict[str, Any]] = []
    count = 0
    for row in journal.iter_results(run_id):  # batch order, as the failures
        last = row["tool_error"]
        if last is None:
            continue
        count += 1
        if len(out) < MAX_FAILURES:
            message = str(last.get("message") or "")[:MAX_MESSAGE_CHARS]
            out.append({"id": row["id"], "count": row["tool_errors"], **last, "message": message})
    return out, count


def report_data(
    journal: Journal, run: str | None, *, now: float, checks_by: Sequence[str] | None = None
) -> dict[str, Any]:
    """What the report shows of a run (id, unique prefix, or None for the latest); its checks, when
    it has any, grouped by the metadata keys `checks_by` (None: those the run was started with)."""
    st = status_json(journal, run, checks_by=checks_by)
    status: dict[str, Any] = {k: v for k, v in st.items() if k != "governor"}  # raw, large, not shown
    run_id = st["run_id"]
    samples, count = journal.thinned_samples(run_id, MAX_POINTS)
    tool_error_jobs, tool_error_job_count = _tool_error_jobs(journal, run_id)
    return {
        "report_version": REPORT_VERSION,
        "generated_at": now,
        "uplot_version": UPLOT_VERSION,
        "status": status,
        "samples": samples,
        "sample_count": count,
        "alert_events": journal.events(run_id, "alert"),
        "failures": _failures(journal, run_id),
        "failure_count": st["counts"]["failed"],
        "tool_error_jobs": tool_error_jobs,
        "tool_error_job_count": tool_error_job_count,
    }


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as null: JSON.parse accepts nothing else."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def embedded_json(data: Any) -> str:
    """JSON that is inert inside `<script type="application/json">`: no `<`, `>` or `&` at all
    (as \\u escapes, which JSON.parse reads back), so no `</script>` or `<!--` in any text can
    end the element or start a comment, whatever a job id or an error message holds."""
    text = json.dumps(_finite(data), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csp_hash(text: str) -> str:
    """`text`'s hash as a Content-Security-Policy source ('sha256-...')."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def inline_asset(name: str) -> str:
    """A packaged web asset's text, to inline in a self-contained page."""
    text = read(name).decode()
    if _CLOSERS.search(text):  # would end its element early: a packaging mistake, not user data
        raise RuntimeError(f"{name} cannot be inlined: it contains '</script', '</style' or '<!--'")
    return text


def _replace_once(page: str, old: str, new: str) -> str:
    if page.count(old) != 1:
        raise RuntimeError(f"the page template lost {old!r}")
    return page.replace(old, new)


def render_html(data: dict[str, Any]) -> str:
    """The live page made self-contained: styles and scripts inline, the data embedded, and a
    Content-Security-Policy that lets only these scripts and styles run and connects nowhere."""
    page = read(PAGE).decode()
    styles = {name: inline_asset(name) for name in _STYLES}
    scripts = {name: inline_asset(name) for name in _SCRIPTS}
    csp = (
        "default-src 'none'; script-src " + " ".join(csp_hash(s) for s in scripts.values())
        + "; style-src " + " ".join(csp_hash(s) for s in styles.values())
        + "; img-src data:; base-uri 'none'; form-action 'none'"
    )  # fmt: skip
    page = _replace_once(
        page,
        '<meta charset="utf-8">',
        f'<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="{csp}">',
    )
    for name, text in styles.items():
        page = _replace_once(page, f'<link rel="stylesheet" href="/static/{name}">', f"<style>{text}</style>")
    data_tag = f'<script type="application/json" id="anvil-data">{embedded_json(data)}</script>\n'
    for n, (name, text) in enumerate(scripts.items()):
        before = data_tag if n == 0 else ""  # the data first: the page's scripts read it
        tag = f'<script src="/static/{name}"></script>'
        page = _replace_once(page, tag, f"{before}<script>{text}</script>")
    title = html.escape(str(data["status"]["run_id"]))
    return _replace_once(page, "<title>Anvil run</title>", f"<title>Anvil report {title}</title>")


def default_name(run_id: str) -> str:
    """`anvil-report-<run id>.html`: the whole id (date, time, 6 random hex digits), since its
    first characters are only the date, shared by the day's runs."""
    return f"anvil-report-{run_id}.html"


def write_report(path: Path, html: str) -> None:
    """Write atomically (a temp file beside it, then rename), mode 0600: it holds error messages
    of the run's jobs. UsageError (exit 2) when it cannot be written; nothing is left behind."""
    try:
        secure_write_lines(path, [html])
    except OSError as exc:
        raise UsageError(f"cannot write the report to {path}: {exc.strerror or exc}") from None


def build_report(
    journal: Journal, run: str | None, output: Path | None, checks_by: Sequence[str] | None = None
) -> tuple[str, Path]:
    """Write the report of a run; returns (its run id, the path written)."""
    data = report_data(journal, run, now=time.time(), checks_by=checks_by)
    run_id = str(data["status"]["run_id"])
    path = output if output is not None else Path(default_name(run_id))
    write_report(path, render_html(data))
    return run_id, path
