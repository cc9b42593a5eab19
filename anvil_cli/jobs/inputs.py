"""Rows of a templated batch's inputs file (.csv with a header row, or .jsonl of objects), streamed."""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from anvil_cli.errors import Problem
from anvil_cli.input_limits import scan_value
from anvil_cli.jobs.fields import type_name
from anvil_cli.jobs.jsonl_source import JsonLineError, capped_lines, parse_json_line, too_long


@dataclass(frozen=True, slots=True)
class Row:
    """One input row: its 1-based line in the inputs file and its values by column name."""

    line: int
    values: dict[str, Any]


def iter_rows(
    path: Path, label: str, needed: Collection[str], id_field: str | None
) -> Iterator[Row | Problem]:
    """Rows in file order; every name in `needed` (and `id_field`) must be present."""
    wanted = sorted({*needed, *([id_field] if id_field else [])})
    try:
        if path.suffix.lower() == ".csv":
            yield from _csv_rows(path, label, wanted)
        else:
            yield from _jsonl_rows(path, label, wanted)
    except UnicodeDecodeError as exc:
        yield Problem(label, f"not valid UTF-8 (near byte offset {exc.start}): save the file as UTF-8")
    except OSError as exc:
        yield Problem(label, f"cannot read inputs file: {exc.strerror or exc}")


def _missing_message(name: str, where: str) -> str:
    return f"placeholder or id_field {{{name}}} has no {where} in the inputs file"


class _BadLine(Exception):
    """A line of the inputs file that cannot be read (too long, not UTF-8)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _text_lines(fh: IO[bytes]) -> Iterator[str]:
    """The lines of a CSV file as text, each at most MAX_LINE_BYTES (csv reads whole lines)."""
    for lineno, raw in capped_lines(fh):
        if raw is None:
            raise _BadLine(lineno, too_long())
        try:
            yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise _BadLine(
                lineno, f"not valid UTF-8 (byte {exc.start + 1} of the line): save the file as UTF-8"
            ) from None


def _csv_rows(path: Path, label: str, wanted: list[str]) -> Iterator[Row | Problem]:
    with path.open("rb") as fh:
        reader = csv.reader(_text_lines(fh))
        try:
            yield from _csv_records(reader, label, wanted)
        except _BadLine as exc:
            yield Problem(label, exc.message, line=exc.line)


def _csv_records(reader: Any, label: str, wanted: list[str]) -> Iterator[Row | Problem]:
    try:
        header = next(reader, None)
    except csv.Error as exc:
        yield Problem(label, f"CSV error in the header row: {exc}", line=1)
        return
    if header is None:
        yield Problem(label, "empty inputs file: expected a header row of column names", line=1)
        return
    missing = [name for name in wanted if name not in header]
    for name in missing:
        yield Problem(label, _missing_message(name, "column"), line=1, field=name)
    if not missing:
        yield from _csv_body(reader, header, label)


def _csv_body(reader: Any, header: list[str], label: str) -> Iterator[Row | Problem]:
    last_line = reader.line_num
    try:
        for record in reader:
            line, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                msg = f"expected {len(header)} columns (as in the header), got {len(record)}"
                yield Problem(label, msg, line=line)
                continue
            yield Row(line, dict(zip(header, record, strict=True)))
    except csv.Error as exc:
        yield Problem(label, f"CSV error: {exc}", line=last_line + 1)


def _jsonl_rows(path: Path, label: str, wanted: list[str]) -> Iterator[Row | Problem]:
    with path.open("rb") as fh:
        for lineno, raw in capped_lines(fh):
            if raw is None:
                yield Problem(label, too_long(), line=lineno)
                continue
            if raw.isspace():
                continue
            values, problem = _row_values(raw, label, lineno)
            if problem is not None:
                yield problem
                continue
            missing = [name for name in wanted if name not in values]
            for name in missing:
                yield Problem(label, _missing_message(name, "value on this line"), line=lineno, field=name)
            if not missing:
                yield Row(lineno, values)


def _row_values(raw: bytes, label: str, lineno: int) -> tuple[dict[str, Any], Problem | None]:
    """The values of one JSONL row, or the problem with it (bad JSON, not an object, beyond the limits)."""
    try:
        values = parse_json_line(raw)
    except JsonLineError as exc:
        return {}, Problem(label, exc.message, line=lineno, column=exc.column)
    if not isinstance(values, dict):
        return {}, Problem(label, f"expected a JSON object, got {type_name(values)}", line=lineno)
    found, _ = scan_value(values)
    if found is not None:
        return {}, Problem(label, found.message, line=lineno, field=found.path or None)
    return values, None
