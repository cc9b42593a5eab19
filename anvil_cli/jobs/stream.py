"""One streaming pass over a batch file of any shape: jobs and problems, in file order.

The shape is chosen by the extension: `.yaml`/`.yml` → YAML (templated when it has
`template:`), `.jsonl`/`.ndjson` → JSONL; any other extension → JSONL when the first
non-blank character is `{`, else YAML.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

from anvil_cli.errors import Problem
from anvil_cli.jobs.fields import ModelSet
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.jobspec import JobFactory
from anvil_cli.jobs.jsonl_source import iter_jsonl
from anvil_cli.jobs.yaml_source import iter_yaml

YAML_SUFFIXES = (".yaml", ".yml")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def detect_shape(path: Path) -> str:
    """'yaml' or 'jsonl' (see the module docstring)."""
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if head.startswith(b"{") else "yaml"


def unreadable(path: Path, label: str) -> Problem | None:
    """Why the batch file cannot be read at all, or None."""
    try:
        if not path.exists():
            return Problem(label, "batch file not found")
        if path.is_dir():
            return Problem(label, "is a directory, not a batch file")
        with path.open("rb"):
            pass
    except OSError as exc:  # a name too long, a loop of links, no permission
        return Problem(label, f"cannot read: {exc.strerror or exc}")
    return None


def iter_batch(path: Path, *, extra_models: Collection[str] = ()) -> Iterator[Job | Problem]:
    """Jobs in file order, with a Problem in place of each bad job or line; never raises for content.

    Memory stays flat: only the ids seen so far (for duplicate detection) are kept.
    """
    label = str(path)
    problem = unreadable(path, label)
    if problem is not None:
        yield problem
        return
    factory = JobFactory(ModelSet.build(extra_models), base_dir=path.parent)
    source = iter_jsonl if detect_shape(path) == "jsonl" else iter_yaml
    clean = True
    for item in source(path, label, factory):
        if isinstance(item, Problem):
            clean = False
        yield item
    if clean and factory.seq == 0:
        yield Problem(label, "empty batch: no jobs found")
