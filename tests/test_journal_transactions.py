"""The journal's write transactions: committed when the block ends, rolled back when it raises,
and a `transaction()` inside another joins it (no savepoint): the outer block decides for both.
Seen from a second connection, as `anvil status` in another terminal would see the journal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil_cli.engine.journal.store import Journal, journal_path
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import load_batch
from tests.engine_support import write_jsonl_batch


class Boom(Exception):
    pass


@pytest.fixture(name="pair")
def fixture_pair(tmp_path: Path) -> Iterator[tuple[Journal, Journal, str]]:
    """A writer with a run of three jobs, and a reader on the same file."""
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    with Journal.open(tmp_path / ".anvil") as writer:
        run_id = writer.create_run(str(batch), "sha", load_batch(batch))
        with Journal(journal_path(tmp_path / ".anvil"), create=False) as reader:
            yield writer, reader, run_id


def _probes(journal: Journal, run_id: str) -> list[int]:
    return [e["n"] for e in journal.events(run_id, "probe")]


def test_a_transaction_commits_when_its_block_ends(pair: tuple[Journal, Journal, str]) -> None:
    writer, reader, run_id = pair
    with writer.transaction():
        writer.add_event(run_id, "probe", {"n": 1})
        assert writer.db.in_transaction
        assert _probes(writer, run_id) == [1]  # the writer sees its own write...
        assert _probes(reader, run_id) == []  # ...nobody else does yet
    assert not writer.db.in_transaction
    assert _probes(reader, run_id) == [1]


def test_a_transaction_rolls_back_when_its_block_raises(pair: tuple[Journal, Journal, str]) -> None:
    writer, reader, run_id = pair
    with pytest.raises(Boom), writer.transaction():
        writer.add_event(run_id, "probe", {"n": 1})
        writer.mark_dispatched(run_id, [0], 100.0)
        raise Boom  # the block's error is the one that propagates
    assert not writer.db.in_transaction
    assert _probes(writer, run_id) == [] and _probes(reader, run_id) == []
    assert writer.counts(run_id)["running"] == 0


def test_a_rolled_back_transaction_leaves_earlier_commits(pair: tuple[Journal, Journal, str]) -> None:
    writer, reader, run_id = pair
    with writer.transaction():
        writer.add_event(run_id, "probe", {"n": 1})
    with pytest.raises(Boom), writer.transaction():
        writer.add_event(run_id, "probe", {"n": 2})
        raise Boom
    assert _probes(reader, run_id) == [1]


def test_a_nested_transaction_commits_only_with_the_outer_one(pair: tuple[Journal, Journal, str]) -> None:
    writer, reader, run_id = pair
    with writer.transaction():
        writer.add_event(run_id, "probe", {"n": 1})
        with writer.transaction():
            writer.add_event(run_id, "probe", {"n": 2})
        assert writer.db.in_transaction  # the inner block's end committed nothing
        assert _probes(reader, run_id) == []
        writer.add_event(run_id, "probe", {"n": 3})
    assert _probes(reader, run_id) == [1, 2, 3]


def test_an_outer_rollback_discards_what_the_inner_block_did(pair: tuple[Journal, Journal, str]) -> None:
    writer, reader, run_id = pair
    with pytest.raises(Boom), writer.transaction():
        with writer.transaction():
            writer.add_event(run_id, "probe", {"n": 1})
            writer.mark_dispatched(run_id, [0, 1], 100.0)
        raise Boom
    assert _probes(writer, run_id) == [] and _probes(reader, run_id) == []
    assert writer.counts(run_id)["running"] == 0


def test_an_inner_error_that_propagates_rolls_back_both(pair: tuple[Journal, Journal, str]) -> None:
    writer, reader, run_id = pair
    with pytest.raises(Boom), writer.transaction():
        writer.add_event(run_id, "probe", {"n": 1})
        with writer.transaction():
            writer.add_event(run_id, "probe", {"n": 2})
            raise Boom
    assert not writer.db.in_transaction
    assert _probes(reader, run_id) == []


def test_an_inner_error_the_outer_block_catches_undoes_nothing(pair: tuple[Journal, Journal, str]) -> None:
    """No savepoint: what the inner block wrote before raising commits with the outer block."""
    writer, reader, run_id = pair
    with writer.transaction():
        writer.add_event(run_id, "probe", {"n": 1})
        with pytest.raises(Boom), writer.transaction():
            writer.add_event(run_id, "probe", {"n": 2})
            raise Boom
        assert writer.db.in_transaction  # the outer transaction goes on
        writer.add_event(run_id, "probe", {"n": 3})
    assert _probes(reader, run_id) == [1, 2, 3]


def test_a_method_that_opens_a_transaction_joins_the_callers(
    pair: tuple[Journal, Journal, str], tmp_path: Path
) -> None:
    writer, reader, run_id = pair
    (extra,) = load_batch(write_jsonl_batch(tmp_path / "more.jsonl", ["d"]))
    extra = Job.from_record({**extra.to_record(), "seq": 3, "id": "more"})
    with pytest.raises(Boom), writer.transaction():
        assert writer.add_jobs(run_id, [extra]) == 1  # its own transaction() joined this one
        raise Boom
    run = reader.get_run(run_id)
    assert run is not None and run.total == 3
    assert reader.job_by_id(run_id, "more") is None and writer.job_by_id(run_id, "more") is None


def test_a_run_is_created_all_or_nothing(tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b"])

    def jobs_then_failure() -> Iterator[Job]:
        yield from load_batch(batch)
        raise Boom  # e.g. the batch file became unreadable halfway

    with Journal.open(tmp_path / ".anvil") as journal:
        with pytest.raises(Boom):
            journal.create_run(str(batch), "sha", jobs_then_failure())
        assert journal.list_runs() == []
        assert journal.db.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)
        assert not journal.db.in_transaction
