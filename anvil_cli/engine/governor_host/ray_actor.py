"""The governor as a Ray actor (`--backend ray`): the same `GovernorService` as locally, held by a
named actor in the cluster, so every worker of a run (and with `--governor NAME`, every run that
names it, from any host) draws from one set of buckets and one budget.

A run-private governor is named after the run and killed at its end; a named one is detached
and outlives the runs (`ray kill`-able like any actor). Each run `join`s with what it has
journaled, so the shared budget counts every run's spend once. When the actor is lost, the
run's `RayGovernorHost` starts it again under the same name (the first run to notice does;
the others find it by name) and joins again: the budget is rebuilt from what the runs have
journaled, the rest conservatively (`GovernorSeed`).

Imported only with `--backend ray`.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from anvil_cli.config.settings import Settings
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.engine.governor_host.manager import GovernorService
from anvil_cli.policy.governor import (
    CallAsk,
    Deny,
    GovernorEvent,
    GovernorSeed,
    GovernorView,
    Grant,
    Granted,
    Outcome,
    Wait,
    seed_from,
)

PING_EVERY_S = 1.0  # how often the host asks whether the actor is still there
MAX_GENERATIONS = 1000  # governors of one name started in turn (each after the last was lost)


class RayGovernorClient:
    """A `GovernorClient` over the actor's handle (picklable: workers receive it). A lost actor
    reads as a lost connection, as a dead Manager does locally."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return ray.get(getattr(self._handle, method).remote(*args))
        except RayActorError as exc:
            raise ConnectionError(f"the governor actor is gone: {exc}") from None

    def acquire(
        self, model: str, est_input_tokens: int, max_tokens: int, worst_cost_usd: float, owner: int = -1
    ) -> Grant | Wait | Deny:
        result: Grant | Wait | Deny = self._call(
            "acquire", model, est_input_tokens, max_tokens, worst_cost_usd, owner
        )
        return result

    def acquire_many(self, model: str, asks: list[CallAsk], priority: int, owner: int) -> Granted:
        result: Granted = self._call("acquire_many", model, asks, priority, owner)
        return result

    def settle_many(self, settled: list[tuple[int, Outcome]], released: list[int]) -> list[str]:
        result: list[str] = self._call("settle_many", settled, released)
        return result

    def settle(self, ticket: int, outcome: Outcome) -> None:
        self._call("settle", ticket, outcome)

    def release(self, ticket: int) -> None:
        self._call("release", ticket)

    def release_owner(self, owner: int) -> int:
        result: int = self._call("release_owner", owner)
        return result

    def drain_events(self) -> list[GovernorEvent]:
        result: list[GovernorEvent] = self._call("drain_events")
        return result

    def view(self) -> GovernorView:
        result: GovernorView = self._call("view")
        return result

    def set_breaker(self, model: str, state: str) -> None:
        self._call("set_breaker", model, state)

    def join(self, run_id: str, spent_usd: float) -> None:
        self._call("join", run_id, spent_usd)


class RayGovernorHost:
    """Starts (or finds, by name) the governor actor, notices its loss, starts it again."""

    def __init__(self, settings: Settings, run_id: str, spent_usd: float) -> None:
        self.settings = settings
        self.run_id = run_id
        self.shared = settings.ray.governor is not None
        self.name = settings.ray.governor or f"anvil-governor-{run_id}"
        self.generation = 0
        self.current_name = self.name
        self.client = self._start(GovernorView(), spent_usd)
        self._ping: Any = None
        self._ping_at = 0.0

    @property
    def pid(self) -> int | None:
        return None  # it lives somewhere in the cluster

    def _start(self, last_view: GovernorView, spent_usd: float) -> RayGovernorClient:
        """The live governor of this name, created if need be, joined with this run's spend.

        A dead actor keeps its name for a while (Ray frees it only once it has given up on the
        actor's node), so generation k answers to NAME-gk: the first of NAME, NAME-g1, NAME-g2,
        ... that is alive, or not there yet (then created, seeded from `last_view`). Every
        run sharing the name settles on the same one."""
        for generation in range(self.generation, self.generation + MAX_GENERATIONS):
            name = self.name if generation == 0 else f"{self.name}-g{generation}"
            seed = seed_from(last_view, generation) if generation else None
            client = RayGovernorClient(self._create(name, seed))
            try:
                client.join(self.run_id, spent_usd)
            except ConnectionError:  # a dead one still holding the name: the next generation
                continue
            self.generation, self.current_name = generation, name
            return client
        raise ConnectionError(f"no live governor among {MAX_GENERATIONS} generations of {self.name!r}")

    def _create(self, name: str, seed: GovernorSeed | None) -> Any:
        here = ray.get_runtime_context().get_node_id()
        options: dict[str, Any] = {
            "name": name,
            "namespace": self.settings.ray.namespace,
            "get_if_exists": True,
            "num_cpus": 0,
            "max_restarts": 0,
            # beside the driver when it can be: losing a worker node then loses no governor
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=here, soft=True),
        }
        if self.shared:
            options["lifetime"] = "detached"  # it serves other runs too
        actor_class: Any = ray.remote(GovernorService)
        self._handle: Any = actor_class.options(**options).remote(self.settings.model_dump_json(), 0.0, seed)
        return self._handle

    def lost(self) -> bool:
        """True once the actor is gone; asks it at most every `PING_EVERY_S`."""
        if self._ping is None:
            if time.monotonic() - self._ping_at < PING_EVERY_S:
                return False
            self._ping, self._ping_at = self._handle.ping.remote(), time.monotonic()
            return False
        ready, _ = ray.wait([self._ping], timeout=0)
        if not ready:
            return False
        ping, self._ping = self._ping, None
        try:
            ray.get(ping)
        except RayActorError:
            return True
        return False

    def restart(self, spent_usd: float, last_view: GovernorView) -> GovernorClient:
        """The next generation (or the one another run sharing it has started already)."""
        self.generation += 1
        self._ping = None
        self.client = self._start(last_view, spent_usd)
        return self.client

    def shutdown(self) -> None:
        """A run's own governor ends with it; a shared one stays for the others."""
        if not self.shared:
            try:
                ray.kill(self._handle)
            except Exception:  # already gone, or Ray is shutting down
                return
