"""Message Batches lifecycle through the SDK: create, retrieve, list, cancel, results."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import anthropic

from anvil_cli.sim import SimConfig, SimServer, messages_digest
from anvil_cli.sim.batches import files as batch_files
from anvil_cli.sim.batches.store import BatchStore
from tests.sim_fixtures import (  # noqa: F401
    HAIKU,
    ClientFor,
    SimClock,
    SimFactory,
    fixture_client_for,
    fixture_sim_clock,
    fixture_sim_factory,
    user,
)


def _requests(n: int, text: str = "item") -> list[dict[str, Any]]:
    params = [{"model": HAIKU, "max_tokens": 40, "messages": user(f"{text} {i}")} for i in range(n)]
    return [{"custom_id": f"job-{i}", "params": p} for i, p in enumerate(params)]


def _wait_ended(client: anthropic.Anthropic, batch_id: str) -> Any:
    deadline = time.monotonic() + 30  # a hang guard only
    while time.monotonic() < deadline:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.01)  # sleep-ok: polling the batch's status, bounded by a deadline
    raise AssertionError("batch did not end")


def test_batch_lifecycle(sim_factory: SimFactory, client_for: ClientFor) -> None:
    client = client_for(sim_factory(batch_seconds_per_request=0.005))
    requests = _requests(10)
    requests.append(
        {
            "custom_id": "bad",
            "params": {"model": HAIKU, "max_tokens": 40, "messages": user("@sim{status=500}")},
        }
    )
    created = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 11 and created.id.startswith("msgbatch_")
    ended = _wait_ended(client, created.id)
    assert ended.request_counts.succeeded == 10 and ended.request_counts.errored == 1
    assert ended.ended_at is not None and ended.results_url is not None
    results = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
    assert len(results) == 11 and results["bad"].type == "errored"
    ok = results["job-3"]
    assert ok.type == "succeeded"
    assert ok.message.content[0].text.startswith(f"sim:{messages_digest(user('item 3'))} ")  # type: ignore[union-attr]
    assert [b.id for b in client.messages.batches.list()] == [created.id]


def test_cancel_marks_unprocessed_requests_canceled(
    sim_factory: SimFactory, client_for: ClientFor, sim_clock: SimClock
) -> None:
    # on the simulator's clock, moved by hand: the cancel lands 2.5 requests' time in, however
    # long this machine takes between the two calls
    client = client_for(sim_factory(batch_seconds_per_request=0.05))
    created = client.messages.batches.create(requests=_requests(100))  # type: ignore[arg-type]
    sim_clock.advance(0.125)
    canceling = client.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    sim_clock.advance(0.05)  # canceling lasts one request's time
    ended = _wait_ended(client, created.id)
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (2, 98)
    kinds = {r.result.type for r in client.messages.batches.results(created.id)}
    assert "canceled" in kinds


def test_list_pages_newest_first(sim_factory: SimFactory, client_for: ClientFor) -> None:
    client = client_for(sim_factory())
    ids = [client.messages.batches.create(requests=_requests(1)).id for _ in range(3)]  # type: ignore[arg-type]
    first_page = client.messages.batches.list(limit=2)
    assert [b.id for b in first_page.data] == ids[::-1][:2] and first_page.has_more
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]  # auto-pagination


def test_batch_errors(sim_factory: SimFactory, client_for: ClientFor) -> None:
    client = client_for(sim_factory())
    try:
        client.messages.batches.retrieve("msgbatch_missing")
    except anthropic.NotFoundError as exc:
        assert exc.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    else:
        raise AssertionError("expected 404")
    duplicate = _requests(1) + _requests(1)
    try:
        client.messages.batches.create(requests=duplicate)  # type: ignore[arg-type]
    except anthropic.BadRequestError:
        pass
    else:
        raise AssertionError("expected 400")


def test_batches_survive_a_restart_in_their_directory(tmp_path: Path) -> None:
    where = tmp_path / "sim-batches"
    first = SimServer(SimConfig(batch_seconds_per_request=0.005, batch_dir=str(where))).start_thread()
    with first, anthropic.Anthropic(base_url=first.base_url, api_key="k", max_retries=0) as client:
        done = client.messages.batches.create(requests=_requests(3))  # type: ignore[arg-type]
        _wait_ended(client, done.id)
        answers = {r.custom_id: r.result.model_dump() for r in client.messages.batches.results(done.id)}
        # long enough to be still processing when the simulator stops
        slow = client.messages.batches.create(requests=_requests(2000, "slow"))  # type: ignore[arg-type]
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in where.iterdir()} == {0o600}
    assert {p.name for p in where.iterdir()} == {f"{done.id}.json", f"{slow.id}.json"}

    second = SimServer(SimConfig(batch_seconds_per_request=0.005, batch_dir=str(where))).start_thread()
    with second, anthropic.Anthropic(base_url=second.base_url, api_key="k", max_retries=0) as client:
        assert [b.id for b in client.messages.batches.list()] == [slow.id, done.id]
        again = {r.custom_id: r.result.model_dump() for r in client.messages.batches.results(done.id)}
        assert again == answers
        still = client.messages.batches.retrieve(slow.id)
        assert still.processing_status == "in_progress"  # on the same clock: not ended early
        assert still.created_at == slow.created_at
        client.messages.batches.cancel(slow.id)
    third = SimServer(SimConfig(batch_dir=str(where))).start_thread()
    with third, anthropic.Anthropic(base_url=third.base_url, api_key="k", max_retries=0) as client:
        ended = _wait_ended(client, slow.id)  # the cancel was kept too
        assert ended.request_counts.canceled > 0


def test_a_batch_directory_ignores_files_it_cannot_read_and_forgets_old_batches(tmp_path: Path) -> None:
    where = tmp_path / "sim-batches"
    store = BatchStore.opened(0.01, where, now_s=1_000.0)
    old = store.create([{"custom_id": "a", "params": {}}], now_s=1_000.0)
    (where / "junk.json").write_text("{not json")
    (where / "other.json").write_text('{"created_s": 2000, "unexpected": 1}')
    later = 1_000.0 + batch_files.KEPT_S + 1
    assert BatchStore.opened(0.01, where, now_s=1_001.0).batches.keys() == {old.id}
    assert BatchStore.opened(0.01, where, now_s=later).batches == {}
    assert not (where / f"{old.id}.json").exists()
