"""Where the governor can send a call: the run's endpoints in order (`Route`), the ceilings
several of them share (`Ceiling`), both as one `RouteTable`, and which endpoint served a
cached prompt prefix last (`AffinityMemory`).

Pure values the host builds from settings (`governor_host.manager.route_table`). Without an
`endpoints:` section the table holds one implicit route named "" (`RouteTable.single`), and
every key, event and view is what it was before there were endpoints.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from anvil_cli.policy.governor.limiter import Limits

__all__ = ["AffinityMemory", "Ceiling", "LimitsFor", "Route", "RouteTable"]

# model -> (pool key, Limits): the rate_limits entry and model class a call of `model` draws from
LimitsFor = Callable[[str], tuple[str, Limits]]
# prompt-prefix digests remembered (least recently granted forgotten first)
AFFINITY_ENTRIES: Final = 10_000


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint as the governor sees it.

    `limits_for(model)`: the endpoint's pool for `model` (key and limits), or None when the
    endpoint cannot serve it. `learns_rate`: the provider sends no `anthropic-ratelimit-*`
    headers, so the governor learns the rate from its 429s (`learn.py`). `ceilings`: the names
    of the shared ceilings every grant here also draws from."""

    name: str
    limits_for: Callable[[str], tuple[str, Limits] | None]
    learns_rate: bool = False
    ceilings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ceiling:
    """Limits several endpoints share (`shared_limits:`); its pools are keyed
    "name/default:sonnet" and drawn by every grant on a member endpoint."""

    name: str
    limits_for: LimitsFor


@dataclass(frozen=True, slots=True)
class RouteTable:
    """The run's routes in listed order, its ceilings, and the preferred order per model.

    `order_for(model)`: endpoint names, preferred first (e.g. the cheapest for the model);
    routes it leaves out follow in listed order. None: the listed order."""

    routes: tuple[Route, ...]
    ceilings: tuple[Ceiling, ...] = ()
    order_for: Callable[[str], Sequence[str]] | None = None

    def __post_init__(self) -> None:
        names = [r.name for r in self.routes]
        if not names:
            raise ValueError("a route table needs at least one route")
        if len(set(names)) != len(names):
            raise ValueError(f"route names must be unique: {names}")
        if "" in names and len(names) > 1:
            raise ValueError('the implicit route "" is the only route when there is one')
        known = {c.name for c in self.ceilings}
        for route in self.routes:
            for name in route.ceilings:
                if name not in known:
                    raise ValueError(f"route {route.name!r} names unknown ceiling {name!r}")

    @classmethod
    def single(cls, limits_for: LimitsFor) -> RouteTable:
        """The run's only endpoint (no `endpoints:` section): one route named ""."""
        return cls((Route("", limits_for),))

    @property
    def implicit(self) -> bool:
        """Is this the run's only, unnamed endpoint (keys and views exactly as before endpoints)?"""
        return len(self.routes) == 1 and self.routes[0].name == ""

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    def ceiling(self, name: str) -> Ceiling:
        return next(c for c in self.ceilings if c.name == name)

    def ordered(self, model: str) -> tuple[Route, ...]:
        """Every route in the preferred order for `model` (serving it or not)."""
        if self.order_for is None:
            return self.routes
        by_name = {r.name: r for r in self.routes}
        first = [by_name[n] for n in dict.fromkeys(self.order_for(model)) if n in by_name]
        return (*first, *(r for r in self.routes if r not in first))


class AffinityMemory:
    """Prompt-prefix digest -> the endpoint of the last grant that carried it (its prompt cache
    holds the prefix), bounded: the least recently granted digest is forgotten first."""

    def __init__(self, entries: int = AFFINITY_ENTRIES) -> None:
        self._entries = entries
        self._endpoint: OrderedDict[str, str] = OrderedDict()

    def get(self, digest: str | None) -> str | None:
        return None if digest is None else self._endpoint.get(digest)

    def remember(self, digest: str | None, endpoint: str) -> None:
        if digest is None:
            return
        self._endpoint[digest] = endpoint
        self._endpoint.move_to_end(digest)
        while len(self._endpoint) > self._entries:
            self._endpoint.popitem(last=False)

    def __len__(self) -> int:
        return len(self._endpoint)
