"""RunControl (the HTTP API's controller) on a real journal: what POST /jobs may add."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.journal.store import Journal, journal_path
from anvil_cli.errors import InputError
from anvil_cli.jobs.loader import load_batch
from anvil_cli.session.control import NO_COMMANDS, RunControl
from tests.engine_support import write_jsonl_batch

TOOL = {"name": "lookup", "description": "d", "input_schema": {"type": "object"}}


@pytest.fixture
def control(tmp_path: Path) -> Iterator[RunControl]:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    state = tmp_path / ".anvil"
    with Journal.open(state) as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        ctl = RunControl(journal_path(state), run_id, agent_min=1, agent_max=4)
        try:
            yield ctl
        finally:
            ctl.close()


def test_jobs_with_plain_tools_are_added(control: RunControl) -> None:
    assert control.add_jobs([{"id": "t", "prompt": "hi", "tools": [TOOL]}]) == ["t"]
    assert control.job("t") is not None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"id": "x", "prompt": "hi", "tools": [TOOL, {**TOOL, "anvil_command": "rm -rf /"}]}, "tools[1]"),
        (
            {
                "custom_id": "x",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}],
                    "tools": [{**TOOL, "anvil_command": ["sh", "-c", "id"]}],
                },
            },
            "params.tools[0]",
        ),
    ],
)
def test_tools_with_a_command_are_refused(control: RunControl, raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as caught:
        control.add_jobs([{"id": "fine", "prompt": "ok"}, raw])
    problems = caught.value.problems
    assert [(p.message, p.job_id, p.field, p.line) for p in problems] == [
        (NO_COMMANDS, "x", f"{field}.anvil_command", 2)
    ]
    assert "must not run commands on this host" in NO_COMMANDS
    assert control.job("fine") is None and control.job("x") is None  # nothing was added


def _served(control: RunControl) -> Any:
    from anvil_cli.views.api.server import ApiServer

    return ApiServer(control, "127.0.0.1", 0, "t0ken").start()


def test_the_api_refuses_too_many_jobs_at_once_and_a_full_backlog(
    control: RunControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anvil_cli.session import control as control_module
    from tests.test_api_server import call

    with _served(control) as srv:
        many = [{"id": f"j{i}", "prompt": "hi"} for i in range(control_module.MAX_JOBS_PER_REQUEST + 1)]
        status, _, body = call(srv, "POST", "/jobs", many, token="t0ken")
        assert status == 413 and "at most 1,000 jobs per request" in body["error"]
        monkeypatch.setattr(control_module, "MAX_PENDING_JOBS", 3)  # 1 pending already
        assert call(srv, "POST", "/jobs", [{"id": "a1", "prompt": "hi"}], token="t0ken")[0] == 202
        status, _, body = call(srv, "POST", "/jobs", [{"id": "b1", "prompt": "x"}] * 2, token="t0ken")
        assert status == 429 and "waiting already" in body["error"]
        assert control.job("b1") is None  # nothing of a refused request was added


def test_a_breaker_for_an_unknown_model_is_a_404_not_a_phantom(control: RunControl) -> None:
    from tests.test_api_server import call

    with _served(control) as srv:
        status, _, body = call(srv, "POST", "/breakers/claude-haiku-4-6/open", token="t0ken")
        assert status == 404 and "did you mean 'claude-haiku-4-5'" in body["error"]
        assert call(srv, "POST", "/breakers/bad%00name/open", token="t0ken")[0] == 404
        assert control.pending_commands() == []  # nothing reached the conductor
        assert call(srv, "POST", "/breakers/claude-haiku-4-5/open", token="t0ken")[0] == 200
        assert [c.kind for c in control.pending_commands()] == ["breaker"]
