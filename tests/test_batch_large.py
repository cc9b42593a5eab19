"""A 100,000-job JSONL validates and streams, and memory stays flat while streaming.

How fast is a benchmark's question, not a test's: `python benchmarks/bench_load.py`.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from anvil_cli.jobs.loader import iter_batch, load_batch

PRIORITIES = ("critical", "high", "normal", "low")


def write_jsonl(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            job = {
                "id": f"job-{i}",
                "prompt": f"Summarise item {i} in one line.",
                "model": "claude-haiku-4-5",
                "max_tokens": 256,
                "priority": PRIORITIES[i % 4],
            }
            fh.write(json.dumps(job) + "\n")
    return path


def test_100k_jsonl_validates_and_streams() -> None:
    path = write_jsonl(Path("big.jsonl"), 100_000)
    jobs = load_batch(path)  # a validating pass, then a streaming pass
    seen = 0
    for seen, job in enumerate(jobs, 1):
        assert job.id == f"job-{seen - 1}"  # every job, in file order
    assert seen == 100_000


def test_streaming_memory_is_bounded() -> None:
    path = write_jsonl(Path("big.jsonl"), 20_000)
    tracemalloc.start()
    try:
        for _ in iter_batch(path):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # ~100 bytes a job for the duplicate-id index; the jobs themselves are not kept
    assert peak < 8_000_000


def test_yaml_jobs_are_streamed_not_loaded_whole() -> None:
    path = Path("big.yaml")
    with path.open("w", encoding="utf-8") as fh:
        fh.write("defaults:\n  model: claude-haiku-4-5\njobs:\n")
        for i in range(5_000):
            fh.write(f"  - id: job-{i}\n    prompt: Summarise item {i} in one line.\n    priority: low\n")
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_batch(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 5_000
    assert peak < 2_000_000  # composing the whole document would take several times this
