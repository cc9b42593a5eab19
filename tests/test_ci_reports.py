"""CI reports of a real run (views/ci/): the JUnit file `anvil run --junit` writes, validated
against a JUnit schema (tests/data/junit.xsd) and read by `junitparser`; the GitHub step summary
and annotations for the same run; and hostile job text (line breaks, `::`, `<`, `]]>`, control
characters) put into the journal, inert in all three. One in-process run against the simulator
(in a thread, without latency) serves every test."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import junitparser
import pytest
import typer
import xmlschema
import yaml
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.engine.journal.store import Journal, RunRow
from anvil_cli.errors import UsageError
from anvil_cli.exitcodes import ExitCode
from anvil_cli.session.finish import RunReport
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.views.ci.annotations import escape_data, escape_property, workflow_commands
from anvil_cli.views.ci.github import github_outputs
from anvil_cli.views.ci.jobs import ci_jobs
from anvil_cli.views.ci.junit import junit_xml, xml_safe
from anvil_cli.views.ci.step_summary import md_text
from tests.engine_support import anvil_cmd, cli_env, run_inprocess, write_config

SCHEMA = Path(__file__).parent / "data" / "junit.xsd"
HOSTILE_SAY = "Lyon <b>x</b> ]]> | `tick` ::error::boom"
HOSTILE = (
    "line one\n::error title=pwned::injected\r\n<script>alert(1)</script> ]]> | `x` %0A \x07\x1b[31m\x00 end"
)
JOBS = [
    {"id": "right", "prompt": "Capital of France? @sim{say=Paris}", "checks": [{"contains": "Paris"}]},
    {
        "id": "wrong",
        "prompt": f"Capital of France? @sim{{say={HOSTILE_SAY}}}",
        "checks": [{"name": "is-paris", "equals": "Paris"}],
    },
    {
        "id": "graded-low",
        "prompt": "Capital of France? @sim{say=Paris} @sim{score=1}",
        "checks": [{"name": "right", "judge": {"rubric": "Is it right?", "scale": [1, 5]}}],
    },
    {"id": "broken", "prompt": "Capital of France? @sim{status=400}"},
]


@dataclass
class Ran:
    report: RunReport
    state: Path
    junit: Path
    rows: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    root = tmp_path_factory.mktemp("ci")
    sim = SimServer(SimConfig()).start_thread()  # no latency: the run takes what its calls take
    batch = root / "batch.yaml"
    batch.write_text(
        yaml.safe_dump({"defaults": {"model": "claude-haiku-4-5", "max_tokens": 64}, "jobs": JOBS})
    )
    config = write_config(root / "anvil.yaml", sim.base_url, retries={"max_attempts": 1})
    junit = root / "junit.xml"
    try:
        report = run_inprocess(config, batch, root / "out.jsonl", junit=junit)
    finally:
        sim.stop()
    with Journal.open(root / ".anvil") as journal:
        rows = {row["id"]: row for row in journal.iter_results(report.run_id)}
    yield Ran(report, root / ".anvil", junit, rows)


def _run_row(journal: Journal, run_id: str) -> RunRow:
    row = journal.get_run(run_id)
    assert row is not None
    return row


@pytest.mark.slow
def test_the_run_writes_a_junit_file_valid_against_the_schema(ran: Ran) -> None:
    assert ran.report.exit_code == ExitCode.JOBS_FAILED
    assert ran.report.summary["junit"] == str(ran.junit)
    assert ran.junit.stat().st_mode & 0o777 == 0o600
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(ran.junit))
    assert not list(ran.junit.parent.glob(".junit.xml.*"))  # written atomically: no temp file left


@pytest.mark.slow
def test_junit_counts_and_failures_are_the_journals(ran: Ran) -> None:
    xml = junitparser.JUnitXml.fromfile(str(ran.junit))
    (suite,) = list(xml)
    assert suite.name == "batch.yaml"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 3, 0, 0)
    props = {prop.name: prop.value for prop in suite.properties()}
    with Journal.open(ran.state) as journal:
        cost = journal.totals(ran.report.run_id)["cost_usd"]
    assert props["anvil.run_id"] == ran.report.run_id
    assert float(props["anvil.cost_usd"]) == pytest.approx(cost, abs=1e-6) and cost > 0
    cases = {case.name: case for case in suite}
    assert list(cases) == list(ran.rows)  # batch order
    for job_id, case in cases.items():
        row = ran.rows[job_id]
        assert case.classname == "batch.yaml.claude-haiku-4-5"
        assert case.time == pytest.approx(row["latency_s"], abs=0.001)
    assert cases["right"].is_passed
    (broken,) = cases["broken"].result
    error = ran.rows["broken"]["error"]
    assert isinstance(broken, junitparser.Failure)
    assert (broken.type, broken.message) == (error["type"], error["message"])
    assert error["type"] == "invalid_request_error"
    (wrong,) = cases["wrong"].result
    detail = ran.rows["wrong"]["checks"]["results"][0]["detail"]
    assert wrong.type == "checks" and "is-paris" in wrong.message
    assert wrong.text == f"is-paris (equals): {detail}"
    assert HOSTILE_SAY in detail  # the model's words, `<`, `]]>` and all, read back as written
    (low,) = cases["graded-low"].result
    assert low.type == "checks" and low.message == "1 of 1 checks failed: right"


@pytest.mark.slow
def test_step_summary_and_annotations_for_the_run(ran: Ran, tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n")
    err = io.StringIO()
    env = {"GITHUB_STEP_SUMMARY": str(target), "GITHUB_ACTIONS": "true"}
    with Journal.open(ran.state) as journal:
        assert github_outputs(journal, ran.report.run_id, ran.report.summary, env, err) is None
        totals = journal.totals(ran.report.run_id)
    text = target.read_text()
    assert text.startswith("earlier step\n### Anvil: batch\\.yaml (finished)")  # appended
    summary = ran.report.summary
    counts_row = "| 4 | 3 | 1 | 0 | "
    assert counts_row in text
    assert f"${totals['cost_usd']:.6f}" in text or f"${totals['cost_usd']:.4f}" in text
    assert f"{summary['job_time_s']['p95']:.2f} s" in text
    assert "**Checks:** 1 of 3 answers passed (33.3%)" in text
    assert "#### Failures (3)" in text and "| broken | invalid\\_request\\_error: " in text
    assert "#### Most expensive jobs" in text
    # the hostile answer quoted in the check's detail: no HTML, no cell break, no code span
    assert "<b>" not in text and "&lt;b&gt;" in text and "\\| \\`tick\\`" in text
    lines = err.getvalue().splitlines()
    assert [line.split("::")[1] for line in lines] == [
        "error title=Anvil job wrong failed its checks",
        "error title=Anvil job graded-low failed its checks",
        "error title=Anvil job broken failed",
    ]
    assert lines[2] == (
        "::error title=Anvil job broken failed::invalid_request_error (HTTP 400): "
        + escape_data(ran.rows["broken"]["error"]["message"])
    )


@pytest.mark.slow
def test_no_github_variables_no_output(ran: Ran, tmp_path: Path) -> None:
    err = io.StringIO()
    with Journal.open(ran.state) as journal:
        github_outputs(journal, ran.report.run_id, ran.report.summary, {}, err)
    assert err.getvalue() == ""


def test_fail_under_warning() -> None:
    gate = {"rate": 0.9, "pass_rate": 0.5, "below": True, "message": "pass rate 50.0% < 90.0%: exit 1"}
    (line,) = workflow_commands([], {"fail_under": gate})
    assert line == "::warning title=Anvil checks under --fail-under::pass rate 50.0%25 < 90.0%25: exit 1"


def test_github_escaping() -> None:
    assert escape_data("50%\r\nnext::x") == "50%25%0D%0Anext::x"
    assert escape_property("a: b, c%\n") == "a%3A b%2C c%25%0A"
    assert escape_data("bell\x07 esc\x1b") == "bell\\x07 esc\\x1b"


@pytest.fixture(scope="module")
def hostile(ran: Ran, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the run's journal where a model's and a server's words are hostile: the failed
    job's error message, the failed check's detail; and one job left pending."""
    state = tmp_path_factory.mktemp("hostile") / ".anvil"
    shutil.copytree(ran.state, state)
    with sqlite3.connect(state / "journal.sqlite") as db:
        error = {"type": "api_error\n::error::x", "message": HOSTILE, "status_code": 400}
        db.execute("UPDATE jobs SET error_json = ? WHERE id = 'broken'", (json.dumps(error),))
        checks = dict(ran.rows["wrong"]["checks"])
        checks["results"] = [{**checks["results"][0], "detail": HOSTILE}]
        db.execute("UPDATE jobs SET checks_json = ? WHERE id = 'wrong'", (json.dumps(checks),))
        db.execute("UPDATE jobs SET state = 'pending' WHERE id = 'right'")
    return state


@pytest.mark.slow
def test_hostile_text_stays_inert_in_junit(ran: Ran, hostile: Path, tmp_path: Path) -> None:
    with Journal.open(hostile) as journal:
        xml = junit_xml(journal, _run_row(journal, ran.report.run_id))
    path = tmp_path / "junit.xml"
    path.write_text(xml)
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(path))  # parses: no forbidden character left
    (suite,) = list(junitparser.JUnitXml.fromfile(str(path)))
    assert (suite.tests, suite.failures, suite.skipped) == (4, 3, 1)
    cases = {case.name: case for case in suite}
    assert isinstance(cases["right"].result[0], junitparser.Skipped)
    (broken,) = cases["broken"].result
    assert broken.message == xml_safe(HOSTILE) and broken.type == "api_error\n::error::x"
    assert "<script>" not in xml and "]]>" not in xml and "\x07" not in xml and "\\x07" in broken.message
    (wrong,) = cases["wrong"].result
    assert wrong.text == f"is-paris (equals): {xml_safe(HOSTILE)}"


@pytest.mark.slow
def test_hostile_text_stays_inert_in_the_summary_and_annotations(
    ran: Ran, hostile: Path, tmp_path: Path
) -> None:
    target = tmp_path / "summary.md"
    err = io.StringIO()
    env = {"GITHUB_STEP_SUMMARY": str(target), "GITHUB_ACTIONS": "true"}
    with Journal.open(hostile) as journal:
        github_outputs(journal, ran.report.run_id, ran.report.summary, env, err)
        jobs = {job.id: job for job in ci_jobs(journal, ran.report.run_id)}
    text = target.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text and "\x07" not in text and "\x1b" not in text
    failures = text.split("#### Failures (3)")[1].split("####")[0].strip().splitlines()[2:]
    assert [row.split(" ")[1] for row in failures] == ["wrong", "graded\\-low", "broken"]
    for row in failures:  # every row still has its two cells: no `|` a model wrote splits one
        assert len(re.findall(r"(?<!\\)\|", row)) == 3, row
    assert md_text(HOSTILE) in text
    lines = err.getvalue().splitlines()
    assert len(lines) == 3  # one line a job: no line a model wrote starts a command
    for line in lines:
        assert re.fullmatch(r"::error title=[^:]*::[^\r\n\x00-\x1f]*", line), line
    tail = "%0A::error title=pwned::injected%0D%0A<script>alert(1)</script> ]]> | `x` %250A"
    assert lines[0].endswith(tail + " \\x07\\x1b[31m\\x00 end")
    assert jobs["broken"].error == HOSTILE


@pytest.mark.slow
def test_export_writes_the_same_junit_later(ran: Ran, tmp_path: Path) -> None:
    """`anvil export RUN --junit FILE` (what a failed `--junit` write advises) writes the file
    `anvil run --junit` wrote; without -o or --junit, export is a usage error."""
    runner = CliRunner()
    out = tmp_path / "again.xml"
    state = str(ran.state)
    done = runner.invoke(app, ["export", ran.report.run_id, "--junit", str(out), "--state-dir", state])
    assert done.exit_code == 0, done.output

    def same(xml: str) -> str:  # the run's duration: to its journaled end now, a moment before then
        return re.sub(r'(<testsuites? [^>]*)time="[0-9.]+"', r"\1", xml)

    assert same(out.read_text()) == same(ran.junit.read_text())
    assert out.stat().st_mode & 0o777 == 0o600
    neither = runner.invoke(app, ["export", ran.report.run_id, "--state-dir", state])
    assert neither.exit_code == ExitCode.BAD_INPUT and "--junit FILE" in neither.output


EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "ci"
ANVIL = re.compile(r"\banvil (?:validate|plan|run|report|export|status)\b[^;>\n#]*")


def example_commands(name: str) -> list[list[str]]:
    """Every `anvil` command in an example pipeline's scripts, as argv (redirections left out)."""
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    scripts: list[str] = []
    for job in doc["jobs"].values() if "jobs" in doc else [v for v in doc.values() if isinstance(v, dict)]:
        scripts += [step["run"] for step in job.get("steps", []) if "run" in step]
        scripts += [*job.get("script", []), *job.get("after_script", [])]
    return [shlex.split(found) for script in scripts for found in ANVIL.findall(script)]


def test_the_example_pipelines_run_anvil_as_documented() -> None:
    github = example_commands("github-actions.yml")
    gitlab = example_commands("gitlab-ci.yml")
    assert github == gitlab  # the same steps in both
    assert [argv[1] for argv in github] == ["validate", "plan", "run", "report"]
    plan, run = github[1], github[2]
    assert plan[plan.index("--max-usd") + 1] == "50"
    assert {"--json", "--junit", "-o"} <= set(run)
    gitlab_doc = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    assert gitlab_doc["anvil"]["artifacts"]["reports"]["junit"] == run[run.index("--junit") + 1]
    steps = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())["jobs"]["batch"]["steps"]
    uploaded = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert {"junit.xml", "anvil-report.html"} <= set(uploaded["with"]["path"].split())


@pytest.mark.slow
def test_the_example_pipelines_commands_work_in_github_actions(tmp_path: Path) -> None:
    """Each command of the examples, run as the pipeline runs it (offline: the run `--simulate`)
    on a small batch with a failing job, with GitHub's variables set: the run
    writes the JUnit file, appends the step summary and annotates the failed job."""
    batch = {
        "defaults": {"model": "claude-haiku-4-5", "max_tokens": 32},
        "jobs": [{"id": "fine", "prompt": "Hello"}, {"id": "refused", "prompt": "Hello @sim{status=400}"}],
    }
    (tmp_path / "batch.yaml").write_text(yaml.safe_dump(batch))
    summary = tmp_path / "step-summary.md"
    github = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    codes = {}
    for argv in example_commands("github-actions.yml"):
        if argv[1] == "plan":  # its flags parsed as the CLI parses them (a plan takes seconds)
            command = typer.main.get_command(app)
            assert isinstance(command, typer.core.TyperGroup)
            plan = command.commands["plan"].make_context("plan", argv[2:])
            codes["plan"] = 0 if plan.params["max_usd"] == 50 else -1
            continue
        if argv[1] != "run":  # in process
            codes[argv[1]] = CliRunner().invoke(app, argv[1:], env=github).exit_code
            continue
        done = subprocess.run(  # the run as its own process: what GitHub's runner reads of it
            anvil_cmd(*argv[1:], "--simulate"),
            cwd=tmp_path,
            env={**cli_env(), **github},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        codes["run"] = done.returncode
        ran_summary = json.loads(done.stdout)  # annotations on stderr: stdout stays JSON
        assert "::error title=Anvil job refused failed::invalid_request_error (HTTP 400)" in done.stderr
    assert codes == {"validate": 0, "plan": 0, "run": ExitCode.JOBS_FAILED, "report": 0}
    assert ran_summary["junit"] == "junit.xml"
    (suite,) = list(junitparser.JUnitXml.fromfile(str(tmp_path / "junit.xml")))
    assert (suite.tests, suite.failures) == (2, 1)
    assert "| 2 | 1 | 1 | 0 |" in summary.read_text()
    assert (tmp_path / "results.jsonl").exists() and (tmp_path / "anvil-report.html").exists()


def test_a_junit_path_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    batch = tmp_path / "batch.yaml"
    batch.write_text(yaml.safe_dump({"defaults": {"model": "claude-haiku-4-5"}, "jobs": JOBS[:1]}))
    config = write_config(tmp_path / "anvil.yaml", "http://127.0.0.1:9")
    with pytest.raises(UsageError, match=r"^--junit .*missing/junit\.xml: the directory .* does not exist"):
        run_inprocess(config, batch, junit=tmp_path / "missing" / "junit.xml")
    assert not (tmp_path / ".anvil").exists()  # nothing written, nothing spent


@pytest.mark.slow
def test_a_junit_file_that_cannot_be_written_says_how_to_write_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up as the report is written: the run's results are in the journal and the
    results file; it exits 3 and gives the `anvil export --junit` command that writes it."""
    import errno

    import anvil_cli.session.finish as finish

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(finish, "write_junit", full)
    batch = tmp_path / "batch.yaml"
    batch.write_text(yaml.safe_dump({"defaults": {"model": "claude-haiku-4-5"}, "jobs": JOBS[:1]}))
    sim = SimServer(SimConfig()).start_thread()
    try:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        report = run_inprocess(config, batch, tmp_path / "out.jsonl", junit=tmp_path / "junit.xml")
    finally:
        sim.stop()
    assert report.exit_code == ExitCode.STOPPED and (tmp_path / "out.jsonl").exists()
    assert report.message is not None and "No space left on device" in report.message
    command = f"anvil export {report.run_id} --junit {tmp_path / 'junit.xml'}"
    assert command in report.message and report.summary["junit_error"] == report.message
