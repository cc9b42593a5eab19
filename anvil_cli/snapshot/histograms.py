"""Percentiles in bounded memory: every p50/p95/p99 Anvil shows comes from here.

* `LogHistogram`: counts of values in geometric buckets 1% wide, so a nearest-rank percentile
  read from it is within 0.5% of the exact one, whatever the distribution, in memory that grows
  with the log of the values' range, not with their number.
* `WindowedHistogram`: the same for the values added over the last few seconds (the recent p95
  the alert watches, a chart sample's window): `LogHistogram`s in short time slots, merged on
  demand. Both windows are read from it, so there is one way of windowing percentiles.

Time is passed in (`now`, monotonic seconds); nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from typing import Final

from anvil_cli.snapshot.types import TimeSummary

__all__ = ["WINDOW_SLOT_S", "LogHistogram", "WindowedHistogram", "percentile", "summaries"]

WINDOW_SLOT_S: Final = 0.25  # a window's older edge is exact to this (values up to this older count)
_HIST_GROWTH: Final = 1.01  # relative width of one histogram bucket
_HIST_FLOOR_S: Final = 1e-6  # values at or below this share bucket "zero"
_LOG_GROWTH: Final = math.log(_HIST_GROWTH)
PERCENTILES: Final = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))


def _rank(pct: float, count: int) -> int:
    """The nearest rank (1-based) of percentile `pct` among `count` values."""
    return min(count, max(1, round(pct / 100.0 * count + 0.5 - 1e-9)))


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Exact percentile (nearest rank) of an already sorted list."""
    if not sorted_values:
        return None
    return sorted_values[_rank(pct, len(sorted_values)) - 1]


class LogHistogram:
    """Counts of values in geometric buckets 1% wide: percentiles within 0.5%, memory O(log range)."""

    __slots__ = ("_buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Record one value (negative values count as zero)."""
        if value > _HIST_FLOOR_S:
            index = math.floor(math.log(value / _HIST_FLOOR_S) / _LOG_GROWTH)
        else:
            index = -1
            if not value > 0.0:  # negative (or not a number): zero
                value = 0.0
        self._buckets[index] += 1
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def _value_of(self, index: int) -> float:
        """The geometric middle of bucket `index`, kept within the values actually seen."""
        if index < 0:
            return self.min
        middle: float = _HIST_FLOOR_S * _HIST_GROWTH ** (index + 0.5)
        return min(self.max, max(self.min, middle))

    def percentile(self, pct: float) -> float | None:
        """Nearest-rank percentile, like `percentile()` on the sorted values (within 0.5%)."""
        if self.count == 0:
            return None
        rank = _rank(pct, self.count)
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return self._value_of(index)
        return self.max  # pragma: no cover - the counts always add up to `count`

    def percentiles(self, digits: int = 6) -> dict[str, float | None]:
        """p50, p95 and p99, rounded."""
        out: dict[str, float | None] = {}
        for name, pct in PERCENTILES:
            value = self.percentile(pct)
            out[name] = None if value is None else round(value, digits)
        return out

    def summary(self) -> TimeSummary:
        """How many values, and their p50, p95 and p99: what every view shows of a time."""
        p = self.percentiles()
        return {"count": self.count, "p50": p["p50"], "p95": p["p95"], "p99": p["p99"]}

    def cumulative(self, bounds: tuple[float, ...]) -> list[int]:
        """How many values are at most each of `bounds` (ascending): a Prometheus histogram's
        buckets. A value within 1% of a bound may fall on either side of it (its bucket's
        middle decides, as for percentiles)."""
        out = [0] * len(bounds)
        for index, n in self._buckets.items():
            value = self._value_of(index)
            for i, bound in enumerate(bounds):
                if value <= bound:
                    out[i] += n
        return out

    @property
    def buckets_used(self) -> int:
        return len(self._buckets)

    def merge(self, other: LogHistogram) -> None:
        """Add every value counted in `other`."""
        self._buckets.update(other._buckets)
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)


def summaries(hists: Mapping[str, LogHistogram]) -> dict[str, TimeSummary]:
    """`LogHistogram.summary()` of each, by name (a model), sorted."""
    return {name: hist.summary() for name, hist in sorted(hists.items())}


class WindowedHistogram:
    """The values added over the last `span_s`, in `slot_s` slots: `window(now, window_s)` is a
    `LogHistogram` of those added in (now - window_s, now], its older edge exact to one slot
    (a value up to `slot_s` older may count). Memory: at most span_s / slot_s + 1 slots, each
    bounded as a `LogHistogram` is, however many values arrive."""

    def __init__(self, span_s: float, slot_s: float = WINDOW_SLOT_S) -> None:
        if span_s <= 0 or slot_s <= 0:
            raise ValueError("span_s and slot_s must be positive")
        self.span_s = span_s
        self.slot_s = slot_s
        self._slots: deque[tuple[int, LogHistogram]] = deque()

    def _slot(self, t: float) -> int:
        return math.floor(t / self.slot_s)

    def add(self, value: float, now: float) -> None:
        slot = self._slot(now)
        if not self._slots or self._slots[-1][0] < slot:
            self._slots.append((slot, LogHistogram()))
        self._slots[-1][1].add(value)  # a clock read late counts in the newest slot
        self._trim(now)

    def _trim(self, now: float) -> None:
        oldest = self._slot(now - self.span_s)
        while self._slots and self._slots[0][0] < oldest:
            self._slots.popleft()

    def window(self, now: float, window_s: float) -> LogHistogram:
        """The values added in the last `window_s` (at most `span_s`) before `now`."""
        self._trim(now)
        oldest = self._slot(now - min(window_s, self.span_s))
        out = LogHistogram()
        for slot, hist in reversed(self._slots):
            if slot < oldest:
                break
            out.merge(hist)
        return out

    @property
    def slots_used(self) -> int:
        return len(self._slots)
