"""`anvil compare`: two runs (through the real engine and the simulator), or the variants of one
run (checks recorded by the real policy functions), side by side in the terminal, as JSON and as
a self-contained page; every figure checked against what the journal holds, computed here from
its own tables."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.engine.journal.store import RUN_FINISHED, Journal
from anvil_cli.engine.outcomes import JobError, JobResult, Usage
from anvil_cli.jobs.job import Job
from anvil_cli.policy.checks.judge import read_judgement
from anvil_cli.policy.checks.record import CheckRecord
from anvil_cli.policy.checks.schema import check_answer
from anvil_cli.policy.checks.spec import CheckSpec
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.views.compare.fmt import fmt_difference, fmt_value
from anvil_cli.views.compare.model import FIGURES
from tests.engine_support import MODEL, run_inprocess, write_config, write_jobs

runner = CliRunner()
SONNET = "claude-sonnet-4-5"
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
JUDGE = CheckSpec.from_json({"name": "quality", "kind": "judge", "rubric": "is it right?", "scale": [1, 5]})
EVIL_ID = "q-</td><script>alert(1)</script>\x1b[31m"


def anvil(*args: str, state_dir: Path) -> tuple[int, str, str]:
    result = runner.invoke(
        app,
        [*args, "--state-dir", str(state_dir)],
        env={"NO_COLOR": "1", "COLUMNS": "220"},
        prog_name="anvil",
    )
    return result.exit_code, result.stdout, result.stderr


# --- what the journal holds, read from its tables here ----------------------------------------


def _rows(state_dir: Path, run_id: str, variant: str | None = None) -> list[dict[str, Any]]:
    with sqlite3.connect(state_dir / "journal.sqlite") as db:
        found = db.execute(
            "SELECT id, state, cost_usd, latency_s, usage_json, checks_json, job_json, error_json"
            " FROM jobs WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
    rows = []
    for id_, state, cost, latency, usage, checks, job, error in found:
        job = json.loads(job)
        if variant is not None and job.get("variant") != variant:
            continue
        rows.append({
            "id": id_, "state": state, "cost": cost, "latency": latency, "usage": json.loads(usage or "{}"),
            "checks": json.loads(checks) if checks else None, "job": job,
            "error": json.loads(error) if error else None,
        })  # fmt: skip
    return rows


def _nearest_rank(values: list[float], pct: float) -> float | None:
    values = sorted(values)
    return values[max(1, math.ceil(pct / 100 * len(values))) - 1] if values else None


def expected_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [r for r in rows if r["state"] in ("succeeded", "failed")]
    checked = [r["checks"] for r in finished if r["checks"] is not None]
    passed = [
        r for r in finished if r["checks"] is not None and r["state"] == "succeeded" and r["checks"]["passed"]
    ]
    scores = [c["score"] for c in checked if c["score"] is not None]
    cost = math.fsum(r["cost"] for r in rows)
    latencies = [r["latency"] for r in finished if r["latency"] is not None]
    return {
        "jobs": len(rows),
        "succeeded": sum(r["state"] == "succeeded" for r in rows),
        "failed": sum(r["state"] == "failed" for r in rows),
        "checked": len(checked),
        "pass_rate": round(len(passed) / len(checked), 6)
        if checked
        else None,  # as summarize_checks gives it
        "mean_score": round(math.fsum(scores) / len(scores), 6) if scores else None,
        "cost_usd": cost,
        "cost_per_job_usd": cost / len(finished) if finished else None,
        "judge_cost_usd": math.fsum(c["judge_cost_usd"] for c in checked),
        "reasks": sum(c["reasks"] for c in checked),
        "reask_cost_usd": math.fsum(c["reask_cost_usd"] for c in checked),
        "latency_p50_s": _nearest_rank(latencies, 50),
        "latency_p95_s": _nearest_rank(latencies, 95),
        "input_tokens": sum(r["usage"].get("input_tokens", 0) for r in rows),
        "output_tokens": sum(r["usage"].get("output_tokens", 0) for r in rows),
    }


def close(value: Any) -> Any:
    return value if value is None else pytest.approx(value, rel=1e-12, abs=1e-15)


def assert_figures(side: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        assert side[key] == close(value), key


def table_rows(text: str) -> dict[str, list[str]]:
    """The figures table as {label: [cells]} (columns are two spaces apart or more)."""
    labels = {f.label for f in FIGURES}
    out = {}
    for line in text.splitlines():
        label, *cells = re.split(r"\s{2,}", line.strip())
        if label in labels:
            out[label] = cells
    return out


def assert_table(text: str, sides: list[dict[str, Any]], differences: list[dict[str, Any]]) -> None:
    """Every figure and difference printed is the one computed from the journal."""
    rows = table_rows(text)
    assert list(rows) == [f.label for f in FIGURES]
    for f in FIGURES:
        cells = [fmt_value(f.unit, s[f.key]) for s in sides]
        cells += [fmt_difference(f.unit, **d[f.key]) for d in differences]
        assert rows[f.label] == cells, f.label


def difference(a: Any, b: Any) -> dict[str, Any]:
    if a is None or b is None:
        return {"diff": None, "ratio": None}
    return {"diff": b - a, "ratio": b / a if a else None}


# --- two runs through the real engine ----------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """Run A (Haiku) and run B (Sonnet) of overlapping jobs: `flip` fails in B only, `back` in A
    only, `only-a` and `only-b` are in one run each."""
    tmp = tmp_path_factory.mktemp("runs")
    shared = [{"id": f"same-{i}", "prompt": f"question {i} @sim{{output_tokens={5 + i}}}"} for i in range(4)]
    a_jobs = [*shared, {"id": "flip", "prompt": "fine"}, {"id": "back", "prompt": "@sim{status=400} no"},
              {"id": "only-a", "prompt": "a"}]  # fmt: skip
    b_jobs = [*({**j, "model": SONNET} for j in shared), {"id": "flip", "prompt": "@sim{status=400} no"},
              {"id": "back", "prompt": "fine"}, {"id": "only-b", "prompt": "b"}]  # fmt: skip
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        config = write_config(
            tmp / "anvil.yaml", sim.base_url, retries={"max_attempts": 1}, scaling={"workers": 1}
        )
        run_inprocess(config, write_jobs(tmp / "a.jsonl", a_jobs))
        run_inprocess(config, write_jobs(tmp / "b.jsonl", b_jobs))
    state_dir = tmp / ".anvil"
    with Journal.open(state_dir) as journal:
        run_b, run_a = (r.id for r in journal.list_runs(2))
    yield state_dir, run_a, run_b


def test_two_runs_side_by_side_every_figure_from_the_journal(two_runs: tuple[Path, str, str]) -> None:
    state_dir, run_a, run_b = two_runs
    code, out, _ = anvil("compare", run_a[:-1], run_b, "--json", state_dir=state_dir)
    assert code == 0
    data = json.loads(out)
    assert data["matched_by"] == "id" and [s["name"] for s in data["sides"]] == [run_a, run_b]
    rows_a, rows_b = _rows(state_dir, run_a), _rows(state_dir, run_b)
    exp_a, exp_b = expected_figures(rows_a), expected_figures(rows_b)
    assert_figures(data["sides"][0], exp_a)
    assert_figures(data["sides"][1], exp_b)
    assert exp_a["succeeded"] == 6 and exp_a["failed"] == 1 and exp_a["checked"] == 0  # what the runs did
    assert exp_b["cost_usd"] > exp_a["cost_usd"] > 0 and exp_a["output_tokens"] > 0
    (pair,) = data["pairs"]
    for key, value in pair["differences"].items():
        want = difference(exp_a[key], exp_b[key])
        assert value == {k: close(v) for k, v in want.items()}, key
    assert pair["matched"] == 6 and pair["only_a"] == ["only-a"] and pair["only_b"] == ["only-b"]
    assert pair["pass_to_fail"] == [
        {"id": "flip", "a_failures": [], "b_failures": [{"name": "error", "detail": "invalid_request_error"}]}
    ]
    assert [f["id"] for f in pair["fail_to_pass"]] == ["back"]
    assert data["cheapest"] is None and data["best_pass_rate"] is None
    assert data["verdict"] == "no side has checked jobs: none can be said to pass at 95%"

    code, text, _ = anvil("compare", run_a, run_b, state_dir=state_dir)
    assert code == 0
    assert_table(text, data["sides"], [pair["differences"]])
    assert "pass → fail" in text and "flip" in text and f"{run_b}: error: invalid_request_error" in text
    assert f"only in {run_a} (1): only-a" in text and f"only in {run_b} (1): only-b" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "{b}"], "no run matches 'nope'"),
        (["{a}", "{b}", "{a}"], "at most two runs"),
        (["{a}", "{b}", "--variants", "x", "y"], "--variants compares the variants of one run"),
        (["{a}", "{b}", "--pass-rate", "1.5"], "--pass-rate must be between 0 and 1"),
        (["{a}", "{a}"], "both names are run"),
        (["{a}"], "has no variants"),
        (["{a}", "--variants", "x", "y"], "has no variants"),
        (["20"], "is ambiguous"),
    ],
)
def test_bad_arguments_exit_2(two_runs: tuple[Path, str, str], args: list[str], message: str) -> None:
    state_dir, run_a, run_b = two_runs
    code, out, err = anvil("compare", *(a.format(a=run_a, b=run_b) for a in args), state_dir=state_dir)
    assert (code, out) == (2, "") and message in err


def test_no_journal_exits_2(tmp_path: Path) -> None:
    code, _, err = anvil("compare", "a", "b", state_dir=tmp_path / "none")
    assert code == 2 and "no journal" in err


# --- variants of one run, checks recorded by the real policy functions -------------------------


def _variant_run(state_dir: Path, tmp: Path) -> str:
    """A run with variants `haiku` and `sonnet` of the same questions; each answer checked by the
    real schema check and a judge's real reading of a grade; re-asks and judges' cost recorded."""
    answers = {  # base id -> variant -> (answer, judge's grade, re-asks, state)
        "q1": {"haiku": ('{"n": 1}', 5, 0, "ok"), "sonnet": ("one", 4, 2, "fail")},
        "q2": {"haiku": ('{"n": "2"}', 2, 1, "ok"), "sonnet": ('{"n": 2}', 5, 0, "ok")},
        "q3": {"haiku": ('{"n": 3}', 4, 0, "ok"), "sonnet": ('{"n": 3}', 4, 0, "ok")},
        EVIL_ID: {"haiku": ('{"n": 4}', 3, 0, "ok"), "sonnet": ('{"n": 4}', 5, 1, "ok")},
        "q5": {"haiku": ("", 1, 0, "error")},
    }
    jobs = []
    for base, by_variant in answers.items():
        for variant in by_variant:
            model = MODEL if variant == "haiku" else SONNET
            jobs.append(Job(f"{base}@{variant}", len(jobs), [{"role": "user", "content": base}], model, 64,
                            output_schema=SCHEMA, checks=(JUDGE.to_json(),), variant=variant))  # fmt: skip
    with Journal.open(state_dir) as journal:
        run_id = journal.create_run(str(tmp / "b.yaml"), "sha", jobs)
        for job in jobs:
            answer, grade, reasks, how = answers[job.base_id][job.variant or ""]
            per_call = 0.001 if job.variant == "haiku" else 0.004
            reply = json.dumps({"score": grade, "reason": f"grade {grade}"})
            results = (check_answer(SCHEMA, answer).as_check(), read_judgement(JUDGE, MODEL, reply))
            record = CheckRecord(results, reasks, reasks * per_call, 0.0002)
            cost = (1 + reasks) * per_call + 0.0002
            error = JobError("invalid_request_error", "bad", 400) if how == "error" else None
            result = JobResult(job.seq, how == "ok", job.model, 1 + reasks, output=answer,
                               usage=Usage(input_tokens=10 + job.seq, output_tokens=3 * job.seq),
                               cost_usd=cost, error=error, latency_s=0.1 * (job.seq + 1),
                               checks=record if how != "error" else None)  # fmt: skip
            journal.record_result(run_id, result)
        journal.set_run_state(run_id, RUN_FINISHED, ended=True)
    return run_id


@pytest.fixture
def variant_run(tmp_path: Path) -> tuple[Path, str]:
    state_dir = tmp_path / ".anvil"
    return state_dir, _variant_run(state_dir, tmp_path)


def test_variants_of_one_run_with_checks(variant_run: tuple[Path, str]) -> None:
    state_dir, run_id = variant_run
    code, out, _ = anvil("compare", run_id, "--json", "--pass-rate", "0.7", state_dir=state_dir)
    assert code == 0
    data = json.loads(out)
    assert data["matched_by"] == "base_id" and [s["name"] for s in data["sides"]] == ["haiku", "sonnet"]
    exp = {v: expected_figures(_rows(state_dir, run_id, v)) for v in ("haiku", "sonnet")}
    assert_figures(data["sides"][0], exp["haiku"])
    assert_figures(data["sides"][1], exp["sonnet"])
    # haiku: q1, q3 pass; q2 fails its schema, the evil one its judge (3 < 4); q5 failed unchecked
    assert exp["haiku"]["pass_rate"] == 2 / 4 and exp["sonnet"]["pass_rate"] == 2 / 4 + 1 / 4
    assert exp["sonnet"]["reasks"] == 3 and exp["haiku"]["judge_cost_usd"] == pytest.approx(4 * 0.0002)
    (pair,) = data["pairs"]
    assert pair["matched"] == 4 and pair["only_a"] == ["q5"] and pair["only_b"] == []
    (to_fail,) = pair["pass_to_fail"]
    assert to_fail["id"] == "q1" and to_fail["a_failures"] == []
    assert [f["name"] for f in to_fail["b_failures"]] == ["schema"]
    assert to_fail["b_failures"][0]["detail"] == check_answer(SCHEMA, "one").error
    flips_back = {f["id"]: f for f in pair["fail_to_pass"]}
    assert set(flips_back) == {"q2", EVIL_ID}
    assert flips_back[EVIL_ID]["a_failures"] == [{"name": "quality", "detail": "grade 3"}]
    # at 70%: sonnet is the only side that passes, however much dearer
    assert data["cheapest"] == "sonnet" and data["best_pass_rate"] == "sonnet"
    per_job = fmt_value("usd", exp["sonnet"]["cost_per_job_usd"])
    verdict = f"cheapest with a pass rate of at least 70%: sonnet (pass rate 75.0%, {per_job} per job)"
    assert data["verdict"] == verdict

    code, text, _ = anvil("compare", run_id, "--variants", "haiku", "sonnet", "--pass-rate", "0.7",
                          state_dir=state_dir)  # fmt: skip
    assert code == 0
    assert_table(text, data["sides"], [pair["differences"]])
    assert data["verdict"] in text
    assert "\x1b" not in text and "q-</td><script>alert(1)</script>\\x1b[31m" in text  # escaped, whole

    code, out, _ = anvil("compare", run_id, "--variants", "sonnet", "haiku", "--json", state_dir=state_dir)
    swapped = json.loads(out)
    assert [s["name"] for s in swapped["sides"]] == ["sonnet", "haiku"]
    assert [f["id"] for f in swapped["pairs"][0]["pass_to_fail"]] == ["q2", EVIL_ID]
    assert swapped["cheapest"] is None and swapped["best_pass_rate"] == "sonnet"
    assert swapped["verdict"] == "no side has a pass rate of at least 95%; the best is sonnet at 75.0%"


def test_the_cheapest_side_at_the_pass_rate(variant_run: tuple[Path, str]) -> None:
    state_dir, run_id = variant_run
    code, out, _ = anvil("compare", run_id, "--json", "--pass-rate", "0.5", state_dir=state_dir)
    data = json.loads(out)
    haiku, sonnet = data["sides"]
    assert haiku["cost_per_job_usd"] < sonnet["cost_per_job_usd"]  # both pass at 50%: the cheaper one
    assert code == 0 and data["cheapest"] == "haiku"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variants", "haiku", "opus"], "has no variant 'opus'; its variants: haiku, sonnet"),
        (["--variants", "haiku", "haiku"], "names 'haiku' twice"),
        (["--pass-rate", "-0.1"], "--pass-rate must be between 0 and 1"),
    ],
)
def test_bad_variants_exit_2(variant_run: tuple[Path, str], args: list[str], message: str) -> None:
    state_dir, run_id = variant_run
    code, out, err = anvil("compare", run_id, *args, state_dir=state_dir)
    assert (code, out) == (2, "") and message in err


def test_the_html_page_is_self_contained_and_inert(variant_run: tuple[Path, str], tmp_path: Path) -> None:
    state_dir, run_id = variant_run
    page = tmp_path / "out" / "compare.html"
    page.parent.mkdir()
    code, out, err = anvil("compare", run_id, "--json", "--html", str(page), state_dir=state_dir)
    assert code == 0 and f"wrote the comparison to {page}" in err
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert [p.name for p in page.parent.iterdir()] == [page.name]  # no temp file left
    html = page.read_text()
    data = json.loads(out)
    # no script runs: the one <script> is the comparison's JSON, and it is the --json output
    assert len(re.findall(r"<script", html, re.I)) == 1
    embedded = re.search(r'<script type="application/json" id="anvil-compare">(.*?)</script>', html, re.S)
    assert embedded is not None and json.loads(embedded.group(1)) == data
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html) == ["data:,"]  # loads nothing
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in html and "default-src 'none'" in html
    for side in data["sides"]:
        for f in FIGURES:
            assert f'<td class="num">{fmt_value(f.unit, side[f.key])}</td>' in html
    assert data["verdict"] in html


def test_the_html_page_cannot_be_written_exit_2(variant_run: tuple[Path, str], tmp_path: Path) -> None:
    state_dir, run_id = variant_run
    code, out, err = anvil("compare", run_id, "--html", str(tmp_path / "no" / "x.html"), state_dir=state_dir)
    assert (code, out) == (2, "") and "cannot write the page" in err


# --- end to end: a run with variants, answers checked by the worker -----------------------------

VARIANTS_BATCH = """\
defaults:
  model: claude-haiku-4-5
  max_tokens: 64
variants:
  - name: good
  - name: bad
    model: claude-sonnet-4-5
    prompt: "{prompt} @sim{{say=London, invalid=always, score=2}}"
jobs:
  - id: paris
    prompt: "capital? @sim{say=Paris}"
    checks: [{equals: Paris}]
  - id: num
    prompt: "a number @sim{invalid=1}"
    output_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
  - id: judged
    prompt: "why? @sim{say=because, score=5}"
    checks: [{judge: is it a good explanation?}]
  - id: same
    prompt: hello
    checks: [{length: {min: 1}}]
"""


def _failed_checks(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": r["name"], "detail": r.get("detail")} for r in row["checks"]["results"] if not r["passed"]
    ]


@pytest.mark.slow
def test_end_to_end_variants_checked_by_the_worker(tmp_path: Path) -> None:
    """Variant `good` (Haiku) answers well; `bad` (Sonnet) fails an equals check, never matches
    its schema and fails its judge: three flips, re-asks and judges' cost as the worker journaled
    them, and `good` the cheapest at 90%."""
    batch = tmp_path / "batch.yaml"
    batch.write_text(VARIANTS_BATCH)
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling={"workers": 1})
        run_inprocess(config, batch)
    state_dir = tmp_path / ".anvil"
    with Journal.open(state_dir) as journal:
        run_id = journal.list_runs(1)[0].id
    code, out, _ = anvil("compare", run_id, "--json", "--pass-rate", "0.9", state_dir=state_dir)
    assert code == 0
    data = json.loads(out)
    assert data["matched_by"] == "base_id" and [s["name"] for s in data["sides"]] == ["good", "bad"]
    good, bad = _rows(state_dir, run_id, "good"), _rows(state_dir, run_id, "bad")
    exp_good, exp_bad = expected_figures(good), expected_figures(bad)
    assert_figures(data["sides"][0], exp_good)
    assert_figures(data["sides"][1], exp_bad)
    assert exp_good["pass_rate"] == 1.0 and exp_bad["pass_rate"] == 0.25 and exp_bad["failed"] == 1
    assert exp_good["reasks"] == 1 and exp_bad["reasks"] == 2 and exp_good["judge_cost_usd"] > 0
    (pair,) = data["pairs"]
    by_id = {Job.from_record(r["job"]).base_id: r for r in bad}
    assert pair["pass_to_fail"] == [
        {"id": job, "a_failures": [], "b_failures": _failed_checks(by_id[job])}
        for job in ("paris", "num", "judged")
    ]
    assert [f["name"] for f in pair["pass_to_fail"][0]["b_failures"]] == ["equals"]
    assert pair["matched"] == 4 and pair["fail_to_pass"] == [] and pair["only_a"] == pair["only_b"] == []
    assert data["cheapest"] == "good" == data["best_pass_rate"]

    code, text, _ = anvil(
        "compare", run_id, "--variants", "good", "bad", "--pass-rate", "0.9", state_dir=state_dir
    )
    assert code == 0
    assert_table(text, data["sides"], [pair["differences"]])
    assert data["verdict"] in text and "bad: equals: " in text
