"""Stats counters, reset, and the process / CLI ways of running the simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import anthropic
import pytest

from anvil_cli.sim import SimConfig, SimServer
from tests.sim_fixtures import (  # noqa: F401
    HAIKU,
    create,
    fixture_client,
    fixture_client_for,
    fixture_sim,
    fixture_sim_factory,
)


def test_stats_counters(sim: SimServer, client: anthropic.Anthropic) -> None:
    create(client, "one @sim{output_tokens=10, input_tokens=100}")
    create(client, "one @sim{output_tokens=10, input_tokens=100}")  # paid twice
    create(client, "two @sim{output_tokens=10, input_tokens=100}", model="claude-sonnet-4-6")
    with pytest.raises(anthropic.RateLimitError):
        create(client, "@sim{status=429}")
    flaky = "@sim{fail=529x1, output_tokens=10, input_tokens=100}"
    with pytest.raises(anthropic.OverloadedError):
        create(client, flaky)
    create(client, flaky)
    stats = sim.stats()
    assert stats["requests"] == 6 and stats["successes"] == 4
    assert stats["by_status"] == {"200": 4, "429": 1, "529": 1} and stats["rate_limited"] == 1
    assert stats["paid_duplicates"] == 1
    assert (stats["input_tokens"], stats["output_tokens"]) == (400, 40)
    assert stats["by_model"]["claude-sonnet-4-6"]["successes"] == 1
    assert stats["by_model"][HAIKU]["requests"] == 5
    assert stats["peak_concurrent"] == 1


def test_reset_clears_counters_and_attempts(sim: SimServer, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.OverloadedError):
        create(client, "@sim{fail=529x1}")
    sim.reset()
    assert sim.stats()["requests"] == 0
    with pytest.raises(anthropic.OverloadedError):
        create(client, "@sim{fail=529x1}")  # attempt 1 again


def test_stop_is_idempotent_and_frees_the_port() -> None:
    server = SimServer(SimConfig()).start_thread()
    port = int(server.base_url.rsplit(":", 1)[1])
    server.stop()
    server.stop()
    with SimServer(SimConfig(port=port)).start_thread() as again:
        assert again.base_url.endswith(f":{port}")


def test_process_mode() -> None:
    with SimServer(SimConfig(seed=5)).start_process() as server:
        with anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0) as client:
            assert create(client).stop_reason == "end_turn"
        assert server.stats()["successes"] == 1


def test_cli_prints_url_and_stops_on_ctrl_c() -> None:
    code = "from anvil_cli.commands.simulate import simulate; import typer; typer.run(simulate)"
    argv = [sys.executable, "-c", code, "--port", "0", "--rpm", "60"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Simulated Anthropic API at http://127.0.0.1:")
        assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:" in line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0  # a hang guard only
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
