"""A request past its model's context window is refused before anything is spent: by
`anvil validate` / `anvil run` (exit 2, the file, the line, the model's limit) and by POST /jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil_cli.engine.journal.store import Journal, journal_path
from anvil_cli.jobs.fields import ModelSet
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.pricing.table import builtin_prices
from anvil_cli.policy.tokens import estimate_input_tokens
from anvil_cli.session.control import RunControl
from anvil_cli.views.api.server import ApiServer
from tests.engine_support import invoke_cli, run_cli, write_jsonl_batch
from tests.test_api_server import TOKEN, call

HAIKU_WINDOW = builtin_prices().context_window("claude-haiku-4-5")
PAST_HAIKU = "word " * (HAIKU_WINDOW + HAIKU_WINDOW // 4)  # ~1.25x the window at 4 characters a token


def _write(path: Path, jobs: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps({"max_tokens": 16, **job}) + "\n" for job in jobs))
    return path


def test_the_table_knows_each_window_and_defaults_to_the_largest() -> None:
    prices = builtin_prices()
    assert prices.context_window("claude-haiku-4-5") == 200_000
    assert prices.context_window("claude-sonnet-4-6") == 1_000_000
    assert prices.context_window("a-model-added-in-prices") == prices.default_context_window == 1_000_000
    models = ModelSet.build(["a-model-added-in-prices"])
    assert models.windows["auto"] == 1_000_000  # `auto` may route to the largest: never refused early
    assert models.context_problem("claude-haiku-4-5", HAIKU_WINDOW) is None
    assert models.context_problem("claude-haiku-4-5", int(HAIKU_WINDOW * 1.05)) is None  # the API decides
    assert "200,000" in (models.context_problem("claude-haiku-4-5", HAIKU_WINDOW * 2) or "")


def test_validate_and_run_refuse_a_prompt_past_the_window_naming_the_limit(tmp_path: Path) -> None:
    batch = _write(
        tmp_path / "b.jsonl",
        [
            {"id": "fits", "model": "claude-sonnet-4-6", "prompt": PAST_HAIKU},  # 1M window: fine
            {"id": "too-long", "model": "claude-haiku-4-5", "prompt": PAST_HAIKU},
            {"id": "huge", "model": "claude-sonnet-4-6", "prompt": "word " * 3_900_000},  # 3.9M tokens
        ],
    )
    tokens = estimate_input_tokens({"messages": [{"role": "user", "content": PAST_HAIKU}]})
    assert tokens > HAIKU_WINDOW * 1.1
    for argv in (("validate", str(batch)), ("run", str(batch), "--simulate")):
        done = run_cli(*argv, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        err = " ".join(done.stderr.split())
        assert "b.jsonl:2" in err and "too-long" in err and "claude-haiku-4-5 (200,000 tokens)" in err
        assert "b.jsonl:3" in err and "huge" in err and "claude-sonnet-4-6 (1,000,000 tokens)" in err
        assert "fits" not in err
    assert not (tmp_path / ".anvil" / "journal.sqlite").exists()  # exit 2: nothing written


def test_message_batches_shape_is_checked_too(tmp_path: Path) -> None:
    line = {
        "custom_id": "mb-1",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": PAST_HAIKU}],
        },
    }
    batch = tmp_path / "mb.jsonl"
    batch.write_text(json.dumps(line) + "\n")
    done = invoke_cli("validate", str(batch), cwd=tmp_path)
    assert done.returncode == 2 and "(200,000 tokens)" in " ".join(done.stderr.split())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    journal = Journal.open(tmp_path / ".anvil")
    run_id = journal.create_run(str(batch), "sha", load_batch(batch))
    control = RunControl(journal_path(tmp_path / ".anvil"), run_id, agent_min=1, agent_max=10)
    with ApiServer(control, "127.0.0.1", 0, TOKEN).start() as srv:
        yield srv
    control.close()
    journal.close()


def test_post_jobs_refuses_a_prompt_past_the_window(server: ApiServer) -> None:
    jobs = [
        {"id": "ok", "model": "claude-haiku-4-5", "prompt": "short", "max_tokens": 16},
        {"id": "long", "model": "claude-haiku-4-5", "prompt": PAST_HAIKU, "max_tokens": 16},
    ]
    status, _, body = call(server, "POST", "/jobs", jobs)
    assert status == 400
    assert len(body["problems"]) == 1
    assert "long" in body["problems"][0] and "claude-haiku-4-5 (200,000 tokens)" in body["problems"][0]
    status, _, _ = call(server, "GET", "/jobs/ok")
    assert status == 404  # nothing of a refused body is added
