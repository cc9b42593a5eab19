"""`anvil run --simulate`: the embedded simulated API a run's calls go to instead of a provider
(no key, no cost), and the settings it needs (a Message Batch ends in about a second)."""

from __future__ import annotations

from contextlib import ExitStack

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.settings import Settings

SIM_API_KEY = "sk-ant-simulated-local-key"
SIM_POLL_INTERVAL_S = 1.0  # `--mode batches --simulate`: the embedded simulator answers in ~1 s


def simulated_poll(settings: Settings, simulate: bool) -> Settings:
    """Against the embedded simulator (which ends a Message Batch in about a second), poll every
    `SIM_POLL_INTERVAL_S` rather than the real API's 30 s, unless the user set an interval."""
    if not simulate or "poll_interval_s" in settings.batches.model_fields_set:
        return settings
    batches = settings.batches.model_copy(update={"poll_interval_s": SIM_POLL_INTERVAL_S})
    return settings.model_copy(update={"batches": batches})


def simulated_endpoints(endpoints: tuple[Endpoint, ...], base_url: str) -> tuple[Endpoint, ...]:
    """The run's endpoints, each calling the embedded simulator at `base_url` instead."""
    return tuple(endpoint.at(base_url, "the embedded simulator") for endpoint in endpoints)


def start_simulator(settings: Settings, stack: ExitStack) -> str:
    """The embedded simulator in a process of its own, stopped with `stack`; its base URL."""
    from anvil_cli.sim import SimServer
    from anvil_cli.sim.embedded import embedded_config

    server = SimServer(embedded_config(settings)).start_process()
    stack.callback(server.stop)
    return server.base_url
