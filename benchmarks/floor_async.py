"""The floor of benchmarks 5 and 6: the least a client can do to run a batch.

One asyncio process (uvloop when installed), the SDK's async client on its aiohttp transport
with a connection limit of at least `--agents`, `--agents` tasks pulling job numbers from one
shared queue, no retries, no limiter, no journal. It is run as its own process so that its
CPU and memory are measured exactly like Anvil's. Prints one JSON line:

    {"ok": N, "failed": N, "errors": {...}, "first_sent": t, "last_done": t}   (epoch seconds)

    python benchmarks/floor_async.py --base-url http://127.0.0.1:PORT --jobs 4000 --agents 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections import Counter
from typing import Any

MODEL = "claude-haiku-4-5"


def raise_nofile() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(base_url: str, jobs: int, agents: int, timeout_s: float) -> dict[str, Any]:
    import anthropic
    import httpx2

    limits = httpx2.Limits(max_connections=agents, max_keepalive_connections=agents)
    http_client = anthropic.DefaultAioHttpClient(limits=limits, timeout=timeout_s)
    client = anthropic.AsyncAnthropic(
        api_key="bench-key", base_url=base_url, max_retries=0, http_client=http_client
    )
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(jobs):
        queue.put_nowait(i)
    errors: Counter[str] = Counter()
    ok = 0
    first_sent: float | None = None
    last_done = 0.0

    async def agent() -> None:
        nonlocal ok, first_sent, last_done
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if first_sent is None:
                first_sent = time.time()
            try:
                await client.messages.create(
                    model=MODEL, max_tokens=64, messages=[{"role": "user", "content": f"bench {i}"}]
                )
                ok += 1
            except Exception as exc:  # counted and reported: the floor never retries
                errors[type(exc).__name__] += 1
            last_done = time.time()

    async with client:
        await asyncio.gather(*(agent() for _ in range(agents)))
    return {
        "ok": ok,
        "failed": sum(errors.values()),
        "errors": dict(errors),
        "first_sent": first_sent,
        "last_done": last_done,
    }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args()
    raise_nofile()
    try:
        import uvloop
    except ImportError:
        uvloop = None
    coro = run(args.base_url, args.jobs, args.agents, args.timeout_s)
    result = uvloop.run(coro) if uvloop is not None else asyncio.run(coro)
    result["uvloop"] = uvloop is not None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
