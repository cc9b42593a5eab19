"""The governor shared by every worker: a `Governor` held in a multiprocessing Manager.

The policy (`anvil_cli.policy.governor`) is pure and takes `now`; this module is the thin driver
that reads the clock, holds the lock and serves the calls of all worker processes. It builds
the governor from the settings' `GovernorSpec` (spec.py): the pools of the run's one endpoint
(`limits_resolver`), or with `endpoints:` a route per endpoint, the shared ceilings and their
order (`route_table`). The Manager's process imports this module: what it imports at the top
is what serving the governor needs (not the settings' schema, nor the price table's reader).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.managers import BaseManager
from typing import TYPE_CHECKING, cast

from anvil_cli.config.vault import set_not_dumpable
from anvil_cli.engine import garbage
from anvil_cli.engine.governor_host import early
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.engine.governor_host.spec import GovernorSpec, governor_spec, limits_of, routes_of
from anvil_cli.engine.process.lifeline import PidHandle, die_with
from anvil_cli.engine.process.signals import leave_stop_to_conductor
from anvil_cli.policy.governor import (
    CallAsk,
    Deny,
    Governor,
    GovernorEvent,
    GovernorSeed,
    GovernorView,
    Grant,
    Granted,
    Limits,
    Outcome,
    RouteTable,
    Wait,
    seed_from,
)

if TYPE_CHECKING:
    from anvil_cli.config.settings import Settings
    from anvil_cli.policy.budgets import ScopeBook
    from anvil_cli.policy.pricing.pricer import Pricer


def limits_resolver(settings: Settings) -> Callable[[str], tuple[str, Limits]]:
    """`limits_for(model) -> (pool, Limits)`: pools are per config entry and model class."""
    return limits_of(governor_spec(settings).rate_limits)


def route_table(settings: Settings, pricer: Pricer | None = None) -> RouteTable | None:
    """The governor's routes from `endpoints:`, `shared_limits:` and `routing.endpoint_order`;
    None without an `endpoints:` section (the run's one endpoint: `limits_resolver`)."""
    return routes_of(governor_spec(settings), pricer)


def _scope_book(spec: GovernorSpec, settings: Settings | None, run_id: str | None) -> ScopeBook | None:
    """The book of budget.scopes and the state dir's day/month caps (a scope's cap of one run
    under `run_id`); None without caps."""
    if spec.scoped_settings_json is None:
        return None
    # imported here: only a run with caps needs the settings (and pydantic) in this process
    from anvil_cli.config.settings import Settings
    from anvil_cli.engine.ledger.book import scope_book

    return scope_book(settings or Settings.model_validate_json(spec.scoped_settings_json), run_id)


class GovernorService:
    """Serves the governor to many processes and threads; reads the clock, holds the lock."""

    def __init__(
        self,
        spec: GovernorSpec | str,
        spent_before_usd: float = 0.0,
        seed: GovernorSeed | None = None,
        run_id: str | None = None,
    ) -> None:
        """`spec`: the run's `GovernorSpec`, or its settings as JSON (the Ray actor's way)."""
        settings = None
        if isinstance(spec, str):
            from anvil_cli.config.settings import Settings

            settings = Settings.model_validate_json(spec)
            spec = governor_spec(settings)
        self._lock = threading.Lock()
        self._owners: dict[int, int] = {}  # ticket -> worker holding the grant
        self._joined: set[str] = set()  # runs whose earlier spend is counted (`join`)
        warn = spec.warn_usd
        # a replacement of a lost governor does not warn again of what the lost one warned of
        warned = seed is not None and warn is not None and spent_before_usd >= warn
        self._gov = Governor(
            routes_of(spec) or limits_of(spec.rate_limits),
            spec.breaker,
            # a resumed run has spent money already: the cap covers the whole run
            max_usd=spec.max_usd,
            warn_usd=None if warned else warn,
            now=time.monotonic(),
            seed=seed,
            spent_before_usd=spent_before_usd,
            scopes=_scope_book(spec, settings, run_id),  # budget.scopes and the state dir's day/month caps
        )

    def acquire(
        self, model: str, est_input_tokens: int, max_tokens: int, worst_cost_usd: float, owner: int = -1
    ) -> Grant | Wait | Deny:
        """`owner`: the asking worker, so its grants can be released if it dies holding them."""
        with self._lock:
            decision = self._gov.acquire(
                model, est_input_tokens, max_tokens, worst_cost_usd, time.monotonic()
            )
            if isinstance(decision, Grant):
                self._owners[decision.ticket] = owner
            return decision

    def acquire_many(self, model: str, asks: list[CallAsk], priority: int, owner: int) -> Granted:
        """A worker's waiting calls in one round trip (see `Governor.acquire_many`)."""
        with self._lock:
            granted = self._gov.acquire_many(model, asks, time.monotonic(), priority=priority, asker=owner)
            for grant in granted.grants:
                self._owners[grant.ticket] = owner
            return granted

    def settle_many(self, settled: list[tuple[int, Outcome]], released: list[int]) -> list[str]:
        """Calls a worker finished (and grants it did not use), in one round trip. Returns the
        pools paused now (after a 429), so the worker stops handing out their grants."""
        with self._lock:
            now = time.monotonic()
            for ticket, outcome in settled:
                self._owners.pop(ticket, None)
                self._gov.settle(ticket, outcome, now)
            for ticket in released:
                self._owners.pop(ticket, None)
                self._gov.release(ticket, now)
            return self._gov.paused_pools(now)

    def settle(self, ticket: int, outcome: Outcome) -> None:
        with self._lock:
            self._owners.pop(ticket, None)
            self._gov.settle(ticket, outcome, time.monotonic())

    def release(self, ticket: int) -> None:
        with self._lock:
            self._owners.pop(ticket, None)
            self._gov.release(ticket, time.monotonic())

    def release_owner(self, owner: int) -> int:
        """A worker died holding grants: give back their reservations (budget, tokens) and any
        half-open probe, which would otherwise stay taken for the rest of the run."""
        with self._lock:
            tickets = [t for t, o in self._owners.items() if o == owner]
            now = time.monotonic()
            for ticket in tickets:
                del self._owners[ticket]
                self._gov.release(ticket, now)
            return len(tickets)

    def join(self, run_id: str, spent_usd: float) -> None:
        """A run starts drawing from this governor (shared by name on a cluster, or restarted):
        what it has spent already counts against the budget, once per run."""
        with self._lock:
            if run_id not in self._joined:
                self._joined.add(run_id)
                self._gov.charge(spent_usd, time.monotonic())

    def ping(self) -> bool:
        return True

    def drain_events(self) -> list[GovernorEvent]:
        with self._lock:
            return self._gov.drain_events()

    def view(self) -> GovernorView:
        with self._lock:
            return self._gov.view(time.monotonic())

    def set_breaker(self, model: str, state: str) -> None:
        """`model`: a model id (its breaker on every endpoint) or "endpoint/model" (one)."""
        with self._lock:
            self._gov.set_breaker(model, state, time.monotonic())


class GovernorManager(BaseManager):
    """The Manager process that owns the run's one GovernorService."""


GovernorManager.register("Governor", GovernorService)


def _manager_init(conductor_pid: int) -> None:
    set_not_dumpable()  # no /proc reading or ptrace by other processes (spawned: not inherited)
    leave_stop_to_conductor()  # Ctrl-C and SIGTERM to the process group are the conductor's
    die_with(conductor_pid)
    # what it imported lives as long as it does: out of the collector's sight, as the conductor's
    # and the workers' (`garbage`), so serving the workers' calls never walks it
    garbage.for_the_run()


def begin_governor(ctx: BaseContext) -> None:
    """Spawn the Manager process now, for this process's next `start_governor` from `ctx` to
    take (see `early`); `early.drop()` stops it if none does."""
    from anvil_cli.engine.process.forkserver import start_clean  # the conductor's side only

    manager = GovernorManager(ctx=ctx)
    readers: list[Connection] = []
    start_clean(lambda: readers.append(early.begin(manager, _manager_init, (os.getpid(),))))
    early.keep(manager, readers[0], ctx)


def start_governor(
    settings: Settings,
    ctx: BaseContext,
    spent_before_usd: float = 0.0,
    seed: GovernorSeed | None = None,
    run_id: str | None = None,
) -> tuple[GovernorManager, GovernorClient]:
    """Start the Manager process (from `ctx`: `forkserver.governor_context()` in a run), or take
    the one begun early, and create the run `run_id`'s governor in it."""
    manager = _taken_early(ctx)
    if manager is None:
        # imported here, as in `begin_governor`: the spawned governor process imports this
        # module, and never starts a process (the fork server's module is not its to load)
        from anvil_cli.engine.process.forkserver import start_clean

        manager = GovernorManager(ctx=ctx)
        start_clean(lambda: manager.start(initializer=_manager_init, initargs=(os.getpid(),)))
    proxy = manager.Governor(governor_spec(settings), spent_before_usd, seed, run_id)  # type: ignore[attr-defined]
    return manager, cast(GovernorClient, proxy)  # the proxy forwards GovernorService's methods


def _taken_early(ctx: BaseContext) -> GovernorManager | None:
    """The Manager begun early from `ctx`, once it listens; None if there is none, or it died."""
    taken = early.take(ctx)
    if taken is None:
        return None
    manager = cast(GovernorManager, taken[0])
    try:
        early.ready(manager, taken[1])
    except (EOFError, OSError):
        early.discard(manager)
        return None
    return manager


class GovernorKeeper:
    """The run's governor process: started, watched by pid, and started again when lost, from
    the budget the journal holds and the state it last showed (`restart`)."""

    def __init__(
        self, settings: Settings, ctx: BaseContext, spent_before_usd: float = 0.0, run_id: str | None = None
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.run_id = run_id
        self.generation = 0
        self._manager, self.client = start_governor(settings, ctx, spent_before_usd, run_id=run_id)
        self._handle = PidHandle(self.pid or 0)

    @property
    def pid(self) -> int | None:
        return getattr(getattr(self._manager, "_process", None), "pid", None)  # BaseManager keeps it private

    def lost(self) -> bool:
        return self._handle.pid > 0 and not self._handle.alive()

    def restart(self, spent_usd: float, last_view: GovernorView) -> GovernorClient:
        """Kill what is left of the old governor (it may live on if only the fork server died)
        and start a new one: the whole run's spend so far `spent_usd`, the rest from
        `last_view` (see `GovernorSeed`)."""
        self._handle.kill()
        self._close_manager()
        self.generation += 1
        seed = seed_from(last_view, self.generation)
        self._manager, self.client = start_governor(self.settings, self.ctx, spent_usd, seed, self.run_id)
        self._handle = PidHandle(self.pid or 0)
        return self.client

    def _close_manager(self) -> None:
        with contextlib.suppress(Exception):  # it is gone already; this frees our side
            self._manager.shutdown()
        self._handle.close()

    def shutdown(self) -> None:
        self._close_manager()
