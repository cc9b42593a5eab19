"""JSONL batches: one job per line, in Anvil's job shape or the Message Batches request shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from anvil_cli.batch.job import Job
from anvil_cli.batch.jobspec import JobFactory, is_message_batch_request
from anvil_cli.errors import Problem


def iter_jsonl(path: Path, label: str, factory: JobFactory) -> Iterator[Job | Problem]:
    """Jobs and problems in line order; blank lines are skipped; lines are 1-based."""
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if raw.isspace():
                    continue
                yield from _line(raw, lineno, label, factory)
    except OSError as exc:
        yield Problem(label, f"cannot read: {exc.strerror or exc}")


def _line(raw: bytes, lineno: int, label: str, factory: JobFactory) -> Iterator[Job | Problem]:
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError as exc:
        msg = f"not valid UTF-8 (byte {exc.start + 1} of the line): save the file as UTF-8"
        yield Problem(label, msg, line=lineno, column=exc.start + 1)
        return
    except json.JSONDecodeError as exc:
        yield Problem(label, f"invalid JSON: {exc.msg}", line=lineno, column=exc.colno)
        return
    if is_message_batch_request(obj):
        result = factory.message_batch_job(obj, file=label, line=lineno)
    else:
        result = factory.anvil_job(obj, file=label, line=lineno)
    if isinstance(result, Job):
        yield result
    else:
        yield from result
