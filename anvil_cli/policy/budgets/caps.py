"""The caps a call is held against: which scopes a job belongs to (`metadata.team=research`),
each scope's caps by window (a UTC day, a UTC month, this run) and the period a window is in at
a given time (`2026-12-05`, `2026-12`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from anvil_cli.config.budget import Budget

ALL: Final = "all"  # every call made from the state dir (`budget.per_day_usd`, `budget.per_month_usd`)
WINDOWS: Final = ("day", "month", "run")
_WINDOW_WORDS: Final = {"day": "per day", "month": "per month", "run": "this run"}


class CapKey(NamedTuple):
    """Where spend is counted: a scope, a window and the window's period (`run` for this run)."""

    scope: str
    window: str
    period: str

    def label(self) -> str:
        """`per day (2026-12-05)`, `per month (2026-12)`, `this run`."""
        words = _WINDOW_WORDS[self.window]
        return words if self.window == "run" else f"{words} ({self.period})"


@dataclass(frozen=True, slots=True)
class Cap:
    """One cap: at most `usd` for `scope` per `window`."""

    scope: str
    window: str
    usd: float


def caps_from(budget: Budget) -> tuple[Cap, ...]:
    """Every cap the settings set, the state dir's first, then each scope's in order."""
    caps = [
        Cap(ALL, w, usd) for w, usd in (("day", budget.per_day_usd), ("month", budget.per_month_usd)) if usd
    ]
    for key, values in budget.scopes.items():
        for value, c in values.items():
            scope = f"{key}={value}"
            for window, usd in (("day", c.per_day_usd), ("month", c.per_month_usd), ("run", c.max_usd)):
                if usd is not None:
                    caps.append(Cap(scope, window, usd))
    return tuple(caps)


def scopes_of(metadata: Mapping[str, Any], scopes: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """The scopes (`metadata.team=research`) a job with this metadata belongs to: for each
    `metadata.KEY` of `scopes`, the job's value of KEY (dotted: nested) when it is one listed."""
    out: list[str] = []
    for key, values in scopes.items():
        value: Any = metadata
        for part in key.split(".")[1:]:
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            continue
        text = str(value)
        if text in values:
            out.append(f"{key}={text}")
    return tuple(out)


def period_of(window: str, wall: float) -> str:
    """The period `window` is in at `wall` (Unix seconds): the UTC day or month; `run` for the run."""
    if window == "run":
        return "run"
    t = time.gmtime(wall)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        if window == "day"
        else f"{t.tm_year:04d}-{t.tm_mon:02d}"
    )
