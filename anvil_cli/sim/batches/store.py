"""Message Batches on a compressed clock. Every method takes `now_s` (wall-clock seconds); a
store given a directory keeps its batches there (`sim/batches/files.py`)."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anvil_cli.sim.batches import files as batch_files

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
EXPIRY_S = 24 * 3600.0
MAX_REQUESTS = 100_000

RunItem = Callable[[dict[str, Any]], dict[str, Any]]  # params -> result ({"type": ..., ...})


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Batch:
    """One submitted batch; item i is processed at `created_s + (i + 1) * per_item_s`."""

    id: str
    created_s: float
    items: list[tuple[str, dict[str, Any]]]
    per_item_s: float
    cancel_s: float | None = None
    results: list[dict[str, Any]] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        """A batch as saved (`dataclasses.asdict`) and read back from JSON."""
        items = [(str(cid), dict(params)) for cid, params in data["items"]]
        return cls(**{**data, "items": items})

    def end_s(self) -> float:
        natural = self.created_s + len(self.items) * self.per_item_s
        return natural if self.cancel_s is None else min(natural, self.cancel_s + self.per_item_s)

    def processed(self) -> int:
        """How many items get a real result (the rest are canceled)."""
        if self.cancel_s is None or self.per_item_s <= 0:
            return len(self.items) if self.cancel_s is None else 0
        return min(len(self.items), math.floor((self.cancel_s - self.created_s) / self.per_item_s))

    def status(self, now_s: float) -> str:
        if now_s >= self.end_s():
            return "ended"
        return "in_progress" if self.cancel_s is None else "canceling"

    def counts(self) -> dict[str, int]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if self.results is None:
            counts["processing"] = len(self.items)
            return counts
        for line in self.results:
            counts[line["result"]["type"]] += 1
        return counts


def check_requests(body: Any) -> str | None:
    """Problem with a batch create body, or None."""
    requests = body.get("requests") if isinstance(body, Mapping) else None
    if not isinstance(requests, list) or not requests:
        return "requests: a non-empty list is required"
    if len(requests) > MAX_REQUESTS:
        return f"requests: at most {MAX_REQUESTS} requests per batch"
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, Mapping) or not isinstance(item.get("params"), Mapping):
            return f"requests.{i}.params: Field required"
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            return f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"
        if custom_id in seen:
            return f"requests.{i}.custom_id: {custom_id!r} is not unique in the batch"
        seen.add(custom_id)
    return None


@dataclass(slots=True)
class BatchStore:
    """Every batch of one server, newest last; kept in `directory` when one is given."""

    per_item_s: float
    directory: Path | None = None
    batches: dict[str, Batch] = field(default_factory=dict)

    @classmethod
    def opened(cls, per_item_s: float, directory: Path | None, now_s: float) -> BatchStore:
        """A store with the batches saved in `directory` (none without one)."""
        store = cls(per_item_s, directory)
        if directory is not None:
            for data in batch_files.load(directory, now_s):
                try:
                    batch = Batch.from_json(data)
                except (KeyError, TypeError, ValueError):
                    continue  # not a batch this simulator wrote
                store.batches[batch.id] = batch
        return store

    def _save(self, batch: Batch) -> None:
        if self.directory is not None:
            batch_files.save(self.directory, batch.id, asdict(batch))

    def create(self, requests: list[Mapping[str, Any]], now_s: float) -> Batch:
        batch_id = f"msgbatch_sim{uuid.uuid4().hex[:20]}"
        items = [(str(r["custom_id"]), dict(r["params"])) for r in requests]
        batch = Batch(id=batch_id, created_s=now_s, items=items, per_item_s=self.per_item_s)
        self.batches[batch_id] = batch
        self._save(batch)
        return batch

    def get(self, batch_id: str) -> Batch | None:
        return self.batches.get(batch_id)

    def cancel(self, batch: Batch, now_s: float) -> None:
        if batch.cancel_s is None and batch.status(now_s) != "ended":
            batch.cancel_s = now_s
            self._save(batch)

    def settle(self, batch: Batch, now_s: float, run_item: RunItem) -> None:
        """Compute the results once the batch has ended."""
        if batch.results is not None or batch.status(now_s) != "ended":
            return
        done = batch.processed()
        batch.results = [
            {"custom_id": cid, "result": run_item(params) if i < done else {"type": "canceled"}}
            for i, (cid, params) in enumerate(batch.items)
        ]
        self._save(batch)

    def page(self, limit: int, after_id: str | None, before_id: str | None) -> tuple[list[Batch], bool]:
        """Newest first; `after_id` pages towards older batches, `before_id` towards newer."""
        ordered = list(reversed(self.batches.values()))
        ids = [b.id for b in ordered]
        if after_id in ids:
            ordered = ordered[ids.index(after_id) + 1 :]
        elif before_id in ids:
            ordered = ordered[: ids.index(before_id)][-limit:]
        return ordered[:limit], len(ordered) > limit


def batch_json(batch: Batch, now_s: float, base_url: str) -> dict[str, Any]:
    """The MessageBatch object."""
    status = batch.status(now_s)
    ended = status == "ended"
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": batch.counts(),
        "created_at": iso(batch.created_s),
        "expires_at": iso(batch.created_s + EXPIRY_S),
        "ended_at": iso(batch.end_s()) if ended else None,
        "cancel_initiated_at": iso(batch.cancel_s) if batch.cancel_s is not None else None,
        "archived_at": None,
        "results_url": f"{base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
    }
