"""Knowing our batches: a request's custom_id is `<tag>-<seq>`, the tag a hash of the run id,
so another run's (or another state dir's) batch never matches ours; and finding the server
batch behind an intent whose create call was never confirmed."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from anvil_cli.engine.journal.store import BatchRow

INTENT_SKEW_S = 60.0  # a server batch created this long before its intent may still be it


def run_tag(run_id: str) -> str:
    """Six hex digits of the run id's sha256: the run's mark in its custom_ids."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:6]


def custom_id(tag: str, seq: int, part: int | None = None) -> str:
    """A job's custom_id: `<tag>-<seq>` (tag = `run_tag(run_id)`), within `^[a-zA-Z0-9_-]{1,64}$`;
    `<tag>-<seq>-<part>` for one of several requests of a job in one batch (its judges: `part`
    is the judge's index in the job's checks)."""
    return f"{tag}-{seq}" if part is None else f"{tag}-{seq}-{part}"


def split_id(custom: str, tag: str) -> tuple[int, int | None] | None:
    """(seq, part) of one of this run's custom_ids (part None: the job's only request); None for
    anyone else's."""
    seq = seq_of(custom, tag)
    if seq is not None:
        return seq, None
    prefix, _, rest = custom.partition("-")
    head, _, part = rest.partition("-")
    if prefix == tag and _digits(head) and _digits(part):
        return int(head), int(part)
    return None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def seq_of(custom: str, tag: str) -> int | None:
    """The seq of one of this run's custom_ids; None for anyone else's. The `j<seq>` of batches
    recorded by earlier versions of Anvil is read too (those batch ids are in our journal)."""
    prefix, _, rest = custom.partition("-")
    if prefix == tag and _digits(rest):
        return int(rest)
    if custom.startswith("j") and _digits(custom[1:]):
        return int(custom[1:])
    return None


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value or 0)


def _counts_total(batch: Any) -> int:
    c = batch.request_counts
    return int(c.processing + c.succeeded + c.errored + c.canceled + c.expired)


def match_intent(
    api: Any,
    tag: str,
    intent: BatchRow,
    candidates: list[Any],
    foreign: set[str],
    expected: set[str] | None = None,
) -> tuple[Any, Any]:
    """(the server batch that is this intent's, or None; else one that may be, still processing)

    A candidate has as many requests and was created after the intent (give or take the
    clock skew); an ended one is this intent's only when its custom_ids are exactly the
    intent's (`expected`; by default one per job), which also tells our batches from other
    runs' and other state dirs'."""
    if expected is None:
        expected = {custom_id(tag, s) for s in intent.seqs}
    earliest = intent.created_at - INTENT_SKEW_S
    unsure = None
    for batch in candidates:
        if _ts(batch.created_at) < earliest or _counts_total(batch) != len(expected):
            continue
        if batch.processing_status != "ended":
            unsure = unsure if unsure is not None else batch
            continue
        ids = {entry.custom_id for entry in api.messages.batches.results(batch.id)}
        if ids == expected:
            return batch, None
        foreign.add(batch.id)
    return None, unsure


def server_batches(api: Any, since: float, known: set[str]) -> list[Any]:
    """The server's batches created since `since` that no run has recorded, oldest first."""
    found = []
    for batch in api.messages.batches.list(limit=100):
        if _ts(batch.created_at) < since:
            break
        if batch.id not in known:
            found.append(batch)
    return sorted(found, key=lambda b: _ts(b.created_at))
