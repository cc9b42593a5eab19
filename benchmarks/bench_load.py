"""Time and peak memory of loading a 100,000-job batch (JSONL and YAML): `python benchmarks/bench_load.py`.

Each figure is `load_batch` (a validating pass) plus iterating every job (a second pass).
Peak memory is measured in a separate run under tracemalloc, which slows Python down.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from anvil_cli.jobs.loader import load_batch

PRIORITIES = ("critical", "high", "normal", "low")


def write_jsonl(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            job = {
                "id": f"job-{i}",
                "prompt": f"Summarise item number {i} in one line, please.",
                "model": "claude-haiku-4-5",
                "max_tokens": 256,
                "priority": PRIORITIES[i % 4],
                "metadata": {"row": i},
            }
            fh.write(json.dumps(job) + "\n")


def write_yaml(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write("defaults:\n  model: claude-haiku-4-5\n  max_tokens: 256\njobs:\n")
        for i in range(n):
            fh.write(
                f"  - id: job-{i}\n"
                f"    prompt: Summarise item number {i} in one line, please.\n"
                f"    priority: {PRIORITIES[i % 4]}\n"
                f"    metadata: {{row: {i}}}\n"
            )


def load_all(path: Path) -> int:
    return sum(1 for _ in load_batch(path))


def measure(path: Path) -> tuple[float, float, int]:
    start = time.perf_counter()
    count = load_all(path)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    load_all(path)
    peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return seconds, peak_mb, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--jobs", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in (("batch.jsonl", write_jsonl), ("batch.yaml", write_yaml)):
            path = Path(tmp) / name
            write(path, args.jobs)
            seconds, peak_mb, count = measure(path)
            size_mb = path.stat().st_size / 1e6
            print(
                f"{name:12} {count:>7} jobs  {size_mb:6.1f} MB file  {seconds:6.2f} s  peak {peak_mb:6.1f} MB"
            )


if __name__ == "__main__":
    main()
