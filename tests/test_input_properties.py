"""Property tests (issue 11): arbitrary bytes, JSON and YAML fed to the loaders, `validate`, the
job factory behind POST /jobs and the settings loader end in a result or the bad-input error
(BatchError / ConfigError, exit 2), never in another exception; and whatever they accept can be
sent: JSON without NaN, UTF-8, picklable, within the request limit."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.config.load import load_settings
from anvil_cli.errors import BatchError, ConfigError, Problem
from anvil_cli.input_limits import MAX_REQUEST_BYTES
from anvil_cli.jobs.fields import ModelSet
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.jobspec import JobFactory, is_message_batch_request
from anvil_cli.jobs.loader import iter_batch, load_batch

# the autouse fixture only changes directory: each example overwrites the same few files
FAST = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
runner = CliRunner()
MODELS = ModelSet.build()

# -- strategies --------------------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\x1b[31m", "[/bold]", "[bold]x", "\u202e", "\n", ""]),
)
hostile_ints = st.one_of(
    st.integers(-(2**70), 2**70), st.sampled_from([2**63, -(2**63) - 1, 2**63 - 1, 10**4000])
)
scalars = st.one_of(
    st.none(), st.booleans(), hostile_ints, st.floats(allow_nan=True, allow_infinity=True), hostile_text
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def deep_values(draw: st.DrawFn) -> Any:
    """A value wrapped in up to 120 lists/mappings: across the depth limit (64)."""
    value = draw(json_values)
    for wrap in draw(st.lists(st.booleans(), max_size=120)):
        value = [value] if wrap else {"k": value}
    return value


job_keys = st.sampled_from(
    ["id", "prompt", "messages", "system", "model", "max_tokens", "priority", "complexity", "metadata",
     "tools", "tool_choice", "stop_sequences", "custom_id", "params"]
)  # fmt: skip
raw_jobs = st.one_of(
    st.dictionaries(job_keys, st.one_of(json_values, deep_values()), max_size=6),
    st.fixed_dictionaries({"id": hostile_text, "prompt": hostile_text}, optional={"metadata": deep_values()}),
    json_values,
)

YAML_TOKENS = [
    "&a ", "&b ", "*a", "*b", "[", "]", "{", "}", ", ", ": ", "- ", "\n", "  ", "    ", "? ",
    "<<: ", "!!int ", "!!float ", "!!bool ", "!!binary ", "!!set ", "!!str ", "!!python/tuple ",
    "!!timestamp ", "9" * 5000, "0x" + "f" * 40, "1:2:3", "2024-02-30", "2024-01-01", '"\\ud800"',
    "'\x1b'", ".inf", ".nan", "-.inf", "null", "~", "true", "abc", "x", "1e999", "---\n", "...\n",
    "%YAML 1.1\n", "#c", "\t", "|\n", ">\n", "'", '"', "jobs:", "defaults:", "template:", "id: ",
    "prompt: ", "metadata: ", "max_tokens: ", "inputs: ", "state_dir: ", '"a\\0b"', "a" * 300,
    "{x:>99999}", "{x}", "tools: [{name: t, anvil_command: ", "scaling: {queue_size: ",
]  # fmt: skip
yaml_soup = st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join)


# -- checks ------------------------------------------------------------------------------------


def assert_sendable(job: Job) -> None:
    """What the engine does with a job: spool it as JSON, pickle it, send it as UTF-8 JSON."""
    body = json.dumps(job.request(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    assert len(body.encode("utf-8")) <= MAX_REQUEST_BYTES
    json.dumps(job.to_record(), ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert pickle.loads(pickle.dumps(job)) == job


def check_file(path: Path) -> None:
    """iter_batch yields only jobs and problems; load_batch raises only BatchError; validate exits 0 or 2."""
    items = list(iter_batch(path))
    assert all(isinstance(item, Job | Problem) for item in items)
    for item in items:
        if isinstance(item, Job):
            assert_sendable(item)
        else:
            str(item).encode("utf-8")  # printable as it stands
    try:
        jobs = list(load_batch(path))
    except BatchError as exc:
        assert exc.problems and exc.total >= len(exc.problems)
    else:
        assert all(isinstance(job, Job) for job in jobs)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


# -- properties --------------------------------------------------------------------------------


@FAST
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".yaml", ".jsonl", ".txt"]))
def test_arbitrary_bytes_never_raise(data: bytes, suffix: str) -> None:
    path = Path("b" + suffix)
    path.write_bytes(data)
    check_file(path)


@FAST
@given(jobs=st.lists(raw_jobs, min_size=1, max_size=3))
def test_arbitrary_json_lines_never_raise(jobs: list[Any]) -> None:
    path = Path("b.jsonl")
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs), encoding="utf-8", errors="surrogatepass")
    check_file(path)


@FAST
@given(jobs=st.lists(raw_jobs, min_size=1, max_size=3), defaults=st.one_of(st.none(), raw_jobs))
def test_arbitrary_yaml_structures_never_raise(jobs: list[Any], defaults: Any) -> None:
    doc: dict[str, Any] = {} if defaults is None else {"defaults": defaults}
    doc["jobs"] = jobs
    try:
        text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, RecursionError):
        text = yaml.safe_dump({"jobs": [{"prompt": "x"}]})
    path = Path("b.yaml")
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_file(path)


@FAST
@given(
    soup=yaml_soup,
    head=st.sampled_from(
        [
            "",
            "jobs:\n  - prompt: x\n    metadata: ",
            "jobs:\n  - ",
            "template:\n  prompt: 'Say {w}'\ninputs: ",
        ]
    ),
)
def test_yaml_token_soup_never_raises(soup: str, head: str) -> None:
    path = Path("b.yaml")
    path.write_text(head + soup, encoding="utf-8", errors="surrogatepass")
    check_file(path)


@FAST
@given(raws=st.lists(raw_jobs, min_size=1, max_size=4))
def test_job_factory_never_raises(raws: list[Any]) -> None:
    """The path of POST /jobs: each raw job becomes a Job or problems, never an exception."""
    factory = JobFactory(MODELS)
    for n, raw in enumerate(raws, 1):
        if is_message_batch_request(raw):
            made = factory.message_batch_job(raw, file="POST /jobs", line=n)
        else:
            made = factory.anvil_job(raw, file="POST /jobs", line=n)
        if isinstance(made, Job):
            assert_sendable(made)
        else:
            assert made and all(isinstance(p, Problem) for p in made)
            for problem in made:
                str(problem)


@FAST
@given(data=st.one_of(st.binary(max_size=200), yaml_soup.map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_arbitrary_settings_files_never_raise(data: bytes) -> None:
    Path("cfg.yaml").write_bytes(data)
    try:
        load_settings(Path("cfg.yaml"), env={})
    except ConfigError as exc:
        assert exc.problems


SETTINGS_VARS = [
    "ANVIL_RUN__TOOL_TIMEOUT_S", "ANVIL_SCALING__QUEUE_SIZE", "ANVIL_SCALING__WORKERS",
    "ANVIL_BUDGET__MAX_USD", "ANVIL_RATE_LIMITS__DEFAULT__REQUESTS_PER_MINUTE", "ANVIL_STATE_DIR",
    "ANVIL_ROUTING__FALLBACKS", "ANVIL_ALERTS__COMMAND",
]  # fmt: skip


@FAST
@given(
    env=st.dictionaries(
        st.sampled_from(SETTINGS_VARS),
        st.one_of(st.text(max_size=30), st.sampled_from([".inf", "nan", "1e999", "9" * 5000, "[" * 100])),
        max_size=3,
    )
)
def test_arbitrary_environment_never_raises(env: dict[str, str]) -> None:
    try:
        cfg = load_settings(None, env=env)
    except ConfigError as exc:
        assert exc.problems
    else:
        for value in (cfg.run.tool_timeout_s, cfg.rate_limits["default"].requests_per_minute):
            assert math.isfinite(value)
