"""The batch loader API the engine codes against: iter_batch, load_batch, summarize_batch.

* `iter_batch(path)` streams `Job | Problem` in file order and never raises for content.
* `load_batch(path)` validates the whole file first (raising BatchError with every problem,
  an empty batch included), then returns a fresh streaming iterator of the jobs.
* `summarize_batch(path)` counts jobs per model and priority and estimates input tokens.
`extra_models` are model ids added in the config's `prices:`; they are valid too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

from anvil_cli.batch.job import Job
from anvil_cli.batch.stream import detect_shape, iter_batch
from anvil_cli.batch.summary import BatchSummary, summarize_batch
from anvil_cli.errors import BatchError, Problem

__all__ = ["BatchSummary", "detect_shape", "iter_batch", "load_batch", "summarize_batch"]


def load_batch(path: Path, *, extra_models: Collection[str] = ()) -> Iterator[Job]:
    """Validate all of `path` (raise BatchError listing every problem), then stream its jobs."""
    problems = [item for item in iter_batch(path, extra_models=extra_models) if isinstance(item, Problem)]
    if problems:
        raise BatchError(problems)
    return _jobs(path, extra_models)


def _jobs(path: Path, extra_models: Collection[str]) -> Iterator[Job]:
    for item in iter_batch(path, extra_models=extra_models):
        if isinstance(item, Problem):  # the file changed since it was validated
            raise BatchError([item])
        yield item
