"""A continuously refilled token bucket that takes the time as an argument."""

from __future__ import annotations

# A wait shorter than this is reported as "available now": it hides float rounding, so a caller
# that waits exactly `wait_s` and asks again is not told to wait another 1e-12 s.
_EPSILON = 1e-9


class TokenBucket:
    """Tokens refill at `rate_per_s` up to `capacity`; the level may go negative (debt)."""

    def __init__(self, rate_per_s: float, capacity: float, now: float) -> None:
        self.rate_per_s = float(rate_per_s)
        self.capacity = float(capacity)
        self._level = self.capacity
        self._at = now

    def _refill(self, now: float) -> None:
        # Callers in other processes may hand us a slightly older `now`: never refill backwards.
        if now > self._at:
            self._level = min(self.capacity, self._level + (now - self._at) * self.rate_per_s)
            self._at = now

    def level(self, now: float) -> float:
        """Tokens available at `now` (negative while in debt)."""
        self._refill(now)
        return self._level

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` is available; 0.0 if it is now. Over-capacity asks count as full."""
        need = min(amount, self.capacity)
        short = need - self.level(now)
        if short <= _EPSILON * max(1.0, need):
            return 0.0
        if self.rate_per_s <= 0:
            return float("inf")
        return short / self.rate_per_s

    def take(self, amount: float, now: float) -> None:
        """Remove `amount` tokens, going into debt if there are not enough."""
        self._refill(now)
        self._level -= amount

    def give(self, amount: float, now: float) -> None:
        """Refund `amount` tokens, never above capacity."""
        self._refill(now)
        self._level = min(self.capacity, self._level + amount)

    def clamp(self, remaining: float, now: float) -> None:
        """Lower the level to `remaining` if that is lower (the server knows less is left)."""
        self._refill(now)
        self._level = min(self._level, remaining)

    def set_rate(self, rate_per_s: float, capacity: float, now: float) -> None:
        """Change the refill rate and capacity from `now` on; the level is capped at the new capacity."""
        self._refill(now)
        self.rate_per_s = float(rate_per_s)
        self.capacity = float(capacity)
        self._level = min(self._level, self.capacity)
