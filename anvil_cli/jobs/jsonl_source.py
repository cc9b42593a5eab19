"""JSONL batches: one job per line, in Anvil's job shape or the Message Batches request shape.

Lines are read with a length cap (MAX_LINE_BYTES) so one enormous line cannot exhaust memory;
a line's JSON may not nest past what the parser can take, nor hold integer literals longer than
Python converts (both are problems at the line, not tracebacks; `anvil_cli.input_limits.scan_value`
then applies the tighter limits, at the field).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from anvil_cli.errors import Problem
from anvil_cli.input_limits import MAX_DEPTH, MAX_INT_LITERAL_CHARS, MAX_LINE_BYTES, MAX_REQUEST_BYTES
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.jobspec import JobFactory, is_message_batch_request

_CHUNK = 1 << 20


class JsonLineError(ValueError):
    """Why one line is not usable JSON, and the 1-based column when known."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


def parse_json_line(raw: bytes) -> Any:
    """The JSON value of one line; raise JsonLineError (never anything else) when it has none."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise JsonLineError(
            f"not valid UTF-8 (byte {exc.start + 1} of the line): save the file as UTF-8", exc.start + 1
        ) from None
    except json.JSONDecodeError as exc:
        raise JsonLineError(f"invalid JSON: {exc.msg}", exc.colno) from None
    except ValueError:  # Python refuses int() of more than 4,300 digits (CVE-2020-10735)
        raise JsonLineError(
            f"an integer literal longer than {MAX_INT_LITERAL_CHARS:,} digits: integers must fit in 64 bits"
        ) from None
    except RecursionError:  # the C parser stops near Python's recursion limit
        raise JsonLineError(f"nested more than {MAX_DEPTH} levels deep") from None


def capped_lines(fh: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(1-based line number, line) for each line; None for a line over `limit` bytes, which is
    skipped without being held in memory."""
    lineno = 0
    while True:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield lineno, raw
            continue
        while raw and not raw.endswith(b"\n"):  # skip the rest of the long line
            raw = fh.readline(_CHUNK)
        yield lineno, None


def too_long(limit: int = MAX_LINE_BYTES) -> str:
    return (
        f"line longer than {limit / 1e6:,.0f} MB: one job's request must be under "
        f"{MAX_REQUEST_BYTES / 1e6:,.0f} MB (the API's limit)"
    )


def iter_jsonl(path: Path, label: str, factory: JobFactory) -> Iterator[Job | Problem]:
    """Jobs and problems in line order; blank lines are skipped; lines are 1-based."""
    try:
        with path.open("rb") as fh:
            for lineno, raw in capped_lines(fh):
                if raw is None:
                    yield Problem(label, too_long(), line=lineno)
                elif not raw.isspace():
                    yield from _line(raw, lineno, label, factory)
    except OSError as exc:
        yield Problem(label, f"cannot read: {exc.strerror or exc}")


def _line(raw: bytes, lineno: int, label: str, factory: JobFactory) -> Iterator[Job | Problem]:
    try:
        obj = parse_json_line(raw)
    except JsonLineError as exc:
        yield Problem(label, exc.message, line=lineno, column=exc.column)
        return
    if is_message_batch_request(obj):
        result = factory.message_batch_job(obj, file=label, line=lineno)
    else:
        result = factory.anvil_job(obj, file=label, line=lineno)
    if isinstance(result, Job):
        yield result
    else:
        yield from result
