"""Throughput of `anvil simulate` at zero latency: small requests per second on one server core.

The simulator runs in its own process (`SimServer.start_process`); several client processes, each
with many keep-alive aiohttp connections, send small distinct requests for a fixed time.

    python benchmarks/bench_sim.py [--clients 2] [--connections 32] [--seconds 5] [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from multiprocessing.connection import Connection

import aiohttp

from anvil_cli.sim import SimConfig, SimServer

HEADERS = {"x-api-key": "bench", "content-type": "application/json", "anthropic-version": "2026-10-21"}


def _body(client_no: int, i: int, stream: bool) -> bytes:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": f"client {client_no} request {i}: say hi"}],
    }
    return json.dumps(body).encode()


async def _drive(
    base_url: str, client_no: int, connections: int, seconds: float, stream: bool
) -> tuple[int, int]:
    """(successes, failures) of `connections` loops hammering the server for `seconds`."""
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(limit=connections)
    ok = failed = 0
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop() -> None:
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                data = _body(client_no, next(counter), stream)
                async with session.post(f"{base_url}/v1/messages", data=data, headers=HEADERS) as response:
                    await response.read()
                    if response.status == 200:
                        ok += 1
                    else:
                        failed += 1

        await asyncio.gather(*(loop() for _ in range(connections)))
    return ok, failed


def _client_main(
    base_url: str, client_no: int, connections: int, seconds: float, stream: bool, conn: Connection
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    conn.send(asyncio.run(_drive(base_url, client_no, connections, seconds, stream)))
    conn.close()


def run(clients: int, connections: int, seconds: float, stream: bool) -> float:
    """Requests per second answered with 200, over all clients."""
    ctx = multiprocessing.get_context("spawn")
    with SimServer(SimConfig()).start_process() as server:
        pipes, procs = [], []
        for n in range(clients):
            receiver, sender = ctx.Pipe(duplex=False)
            args = (server.base_url, n, connections, seconds, stream, sender)
            proc = ctx.Process(target=_client_main, args=args)
            proc.start()
            sender.close()
            pipes.append(receiver)
            procs.append(proc)
        results = [pipe.recv() for pipe in pipes]
        for proc in procs:
            proc.join()
        stats = server.stats()
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    rate = ok / seconds
    print(
        f"{'streaming' if stream else 'plain'}: {ok} ok, {failed} failed in {seconds:.1f} s "
        f"with {clients} client processes x {connections} connections -> {rate:,.0f} requests/s "
        f"(server counted {stats['successes']} successes)"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    run(args.clients, args.connections, args.seconds, args.stream)


if __name__ == "__main__":
    main()
