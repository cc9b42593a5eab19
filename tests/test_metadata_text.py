"""Metadata is shown in terminals (`anvil status --by metadata.KEY`, the dashboard): like ids, its
keys and text values must be printable, so an escape sequence in a batch can never retitle or
clear the terminal of whoever watches the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.engine_support import invoke_cli

HAIKU = "claude-haiku-4-5"


@pytest.mark.parametrize(
    ("metadata", "where"),
    [
        ({"team": "\x1b]0;pwned\x07"}, "'metadata.team': text must be printable: U+001B at character 1"),
        ({"a": {"b": ["ok", "x\x9bq"]}}, "'metadata.a.b[1]': text must be printable: U+009B at character 2"),
        ({"k\x1b[2J": 1}, "field 'metadata': keys must be printable: U+001B in 'k\\x1b[2J'"),
        ({"rtl": "abc\u202edef"}, "field 'metadata.rtl': text must be printable: U+202E at character 4"),
    ],
)
def test_control_characters_in_metadata_are_refused(
    tmp_path: Path, metadata: dict[str, Any], where: str
) -> None:
    batch = tmp_path / "b.jsonl"
    batch.write_text(json.dumps({"id": "j1", "prompt": "hi", "model": HAIKU, "metadata": metadata}) + "\n")
    done = invoke_cli("validate", str(batch), cwd=tmp_path)
    assert done.returncode == 2
    assert where in done.stderr
    assert "\x1b" not in done.stderr and "\x9b" not in done.stderr  # the message itself is escaped


def test_metadata_in_defaults_is_checked_and_printable_text_passes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'defaults:\n  model: {HAIKU}\n  metadata: {{team: "a\\u0007b"}}\njobs:\n  - prompt: hi\n')
    done = invoke_cli("validate", str(bad), cwd=tmp_path)
    assert done.returncode == 2 and "'defaults.metadata.team': text must be printable: U+0007" in done.stderr
    good = tmp_path / "good.jsonl"
    meta = {"team": "équipe 東京 🚀", "tags": ["a b", 3, None], "nested": {"x": "tab-free"}}
    good.write_text(json.dumps({"id": "j1", "prompt": "hi", "model": HAIKU, "metadata": meta}) + "\n")
    assert invoke_cli("validate", str(good), cwd=tmp_path).returncode == 0
