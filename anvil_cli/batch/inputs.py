"""Rows of a templated batch's inputs file (.csv with a header row, or .jsonl of objects), streamed."""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anvil_cli.batch.fields import type_name
from anvil_cli.errors import Problem


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


def _csv_rows(path: Path, label: str, wanted: list[str]) -> Iterator[Row | Problem]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            yield Problem(label, "empty inputs file: expected a header row of column names", line=1)
            return
        missing = [name for name in wanted if name not in header]
        for name in missing:
            yield Problem(label, _missing_message(name, "column"), line=1, field=name)
        if missing:
            return
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
        for lineno, raw in enumerate(fh, 1):
            if raw.isspace():
                continue
            try:
                values = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield Problem(label, f"invalid JSON: {exc.msg}", line=lineno, column=exc.colno)
                continue
            if not isinstance(values, dict):
                yield Problem(label, f"expected a JSON object, got {type_name(values)}", line=lineno)
                continue
            missing = [name for name in wanted if name not in values]
            for name in missing:
                yield Problem(label, _missing_message(name, "value on this line"), line=lineno, field=name)
            if not missing:
                yield Row(lineno, values)
