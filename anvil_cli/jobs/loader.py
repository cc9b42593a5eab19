"""The batch loader API the engine codes against: iter_batch, load_batch, summarize_batch.

* `iter_batch(path)` streams `Job | Problem` in file order and never raises for content.
* `load_batch(path)` validates the whole file in one streaming pass (raising BatchError with
  its problems, the first MAX_KEPT_PROBLEMS kept and all counted, an empty batch included),
  spooling the jobs to a private temporary file, then streams them from there: bounded
  memory, and the file is parsed once.
* `summarize_batch(path)` counts jobs per model and priority and estimates input tokens.
`extra_models` are model ids added in the config's `prices:`; they are valid too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TextIO

from anvil_cli.errors import BatchError, Problem, ProblemLog
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.stream import detect_shape, iter_batch
from anvil_cli.jobs.summary import BatchSummary, summarize_batch

__all__ = ["BatchSummary", "detect_shape", "iter_batch", "load_batch", "summarize_batch"]


def load_batch(path: Path, *, extra_models: Collection[str] = ()) -> Iterator[Job]:
    """Validate all of `path` (raise BatchError listing every problem), then stream its jobs.

    The jobs seen while validating go to a temporary file (mode 0600, unlinked as soon as it is
    reopened, so nothing is left behind however the iterator ends): a large YAML batch is not
    parsed twice."""
    fd, spool = tempfile.mkstemp(prefix="anvil-batch-", suffix=".jsonl")
    problems = ProblemLog()
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for item in iter_batch(path, extra_models=extra_models):
                if isinstance(item, Problem):
                    problems.add(item)
                elif not problems:
                    out.write(json.dumps(item.to_record(), ensure_ascii=False) + "\n")
        if problems:
            raise BatchError(problems.kept, problems.total)
        reader = open(spool, encoding="utf-8")  # noqa: SIM115  (closed by the generator)
    finally:
        os.unlink(spool)
    return _spooled(reader)


def _spooled(reader: TextIO) -> Iterator[Job]:
    with reader:
        for line in reader:
            yield Job.from_record(json.loads(line))
