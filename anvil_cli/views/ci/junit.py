"""A run as a JUnit XML file, the report every CI system reads (GitLab's `reports: junit`,
Jenkins, GitHub test-report actions): one `<testsuite>` for the run, one `<testcase>` per job.

A failed job is a `<failure>` of its error's type with its message; a job that succeeded but
failed a check is a `<failure type="checks">` naming each failed check and why; a pending job is
`<skipped/>`. Everything is read from the journal. Job text comes from models and servers: the
XML writer escapes it, and the characters XML 1.0 forbids (C0 controls but tab and LF;
surrogates, U+FFFE/U+FFFF), and CR (which a parser would fold), are replaced by their escape
(`\\x07`), so the file always parses and reads back as written."""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from anvil_cli.engine.journal.store import Journal, RunRow
from anvil_cli.engine.output import secure_write_lines
from anvil_cli.views.ci.jobs import CHECKS_FAILED, ERRORED, SKIPPED, CiJob, batch_name, ci_jobs

CHECKS_TYPE = "checks"  # the failure type of a job whose answer failed its checks
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """`text` with every character XML 1.0 forbids replaced by its escape (`\\x07`)."""
    return _FORBIDDEN.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode(), text)


def _secs(value: float) -> str:
    return f"{max(0.0, value):.3f}"


def _classname(suite: str, job: CiJob) -> str:
    """The batch's name, then the job's variant (or model): how CI systems group the cases."""
    return f"{suite}.{job.variant or job.model or 'job'}"


def _testcase(parent: ET.Element, suite: str, job: CiJob) -> None:
    case = ET.SubElement(
        parent,
        "testcase",
        {
            "name": xml_safe(job.id),
            "classname": xml_safe(_classname(suite, job)),
            "time": _secs(job.latency_s),
        },
    )
    if job.verdict == SKIPPED:
        ET.SubElement(case, "skipped", {"message": "pending: not run to the end"})
    elif job.verdict == ERRORED:
        failure = ET.SubElement(
            case, "failure", {"type": xml_safe(job.error_type), "message": xml_safe(job.error)}
        )
        status = f" (HTTP {job.status_code})" if job.status_code is not None else ""
        failure.text = xml_safe(f"{job.error_type}{status}: {job.error}")
    elif job.verdict == CHECKS_FAILED:
        names = ", ".join(c.name for c in job.failed_checks)
        message = f"{len(job.failed_checks)} of {job.checks_total} checks failed: {names}"
        failure = ET.SubElement(case, "failure", {"type": CHECKS_TYPE, "message": xml_safe(message)})
        failure.text = xml_safe(
            "\n".join(f"{c.name} ({c.kind}): {c.detail or 'failed'}" for c in job.failed_checks)
        )


def junit_tree(journal: Journal, run: RunRow, ended_at: float | None = None) -> ET.Element:
    """The run as a `<testsuites>` element with its one `<testsuite>`. `ended_at` (Unix
    seconds): when the run ended, for a run whose end is not journaled yet (default: the
    journal's, else its last update)."""
    suite_name = batch_name(run)
    jobs = list(ci_jobs(journal, run.id))
    failures = sum(1 for j in jobs if j.verdict in (ERRORED, CHECKS_FAILED))
    skipped = sum(1 for j in jobs if j.verdict == SKIPPED)
    end = ended_at if ended_at is not None else (run.ended_at or run.updated_at)
    counts = {"tests": str(len(jobs)), "failures": str(failures), "errors": "0", "skipped": str(skipped)}
    duration = _secs(end - run.created_at)
    root = ET.Element("testsuites", {"name": xml_safe(f"anvil run {run.id}"), **counts, "time": duration})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": xml_safe(suite_name),
            **counts,
            "time": duration,
            # JUnit's timestamp has no zone: UTC
            "timestamp": datetime.fromtimestamp(run.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": xml_safe(socket.gethostname() or "localhost"),
        },
    )
    properties = ET.SubElement(suite, "properties")
    cost = journal.totals(run.id)["cost_usd"]  # the run's spend, as `anvil status` gives it
    for name, value in (
        ("anvil.run_id", run.id),
        ("anvil.mode", run.mode),
        ("anvil.cost_usd", f"{cost:.6f}"),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": xml_safe(value)})
    for job in jobs:
        _testcase(suite, suite_name, job)
    return root


def junit_xml(journal: Journal, run: RunRow, ended_at: float | None = None) -> str:
    """The JUnit XML document of the run (UTF-8, with its declaration)."""
    tree = junit_tree(journal, run, ended_at)
    ET.indent(tree)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(tree, encoding="unicode")


def write_junit(journal: Journal, run: RunRow, path: Path, ended_at: float | None = None) -> None:
    """Write the run's JUnit XML to `path`, all or nothing, mode 0600."""
    secure_write_lines(path, [junit_xml(journal, run, ended_at)])
