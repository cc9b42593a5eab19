"""When a run that cannot reach the API stops: pure, `now` passed in.

Until the API has answered once (any HTTP response, even an error), every attempt that failed
to connect (refused, DNS, connect timeout) is counted from the first one. When that has gone on
for `run.unreachable_after_s` with nothing else in between, no call can succeed: the run stops
(exit 3, resumable: its jobs go back to pending, none is failed) and says what to check.
Once the API has answered, the rule is off for the rest of the run: an outage later on is the
breaker's and the retries' business, as for any transient failure.
"""

from __future__ import annotations

from dataclasses import dataclass

UNREACHABLE = "unreachable"  # the stop reason


@dataclass
class Reachability:
    """Whether the API was ever reached, and since when every attempt has failed to connect."""

    after_s: float
    where: str  # the base URL and where it came from (Endpoint.describe())
    reached: bool = False
    failing_since: float | None = None
    failures: int = 0
    host: str = ""
    last_error: str = ""

    def answered(self) -> None:
        """A response came back (or a call went out and did not fail to connect)."""
        self.reached = True
        self.failing_since = None

    def attempt(self, info: dict[str, object], now: float) -> None:
        """One attempt's log entry (a failed one: CallFailed's `info`)."""
        if self.reached:
            return
        if not info.get("unreachable"):  # it connected: a server is there
            self.answered()
            return
        if self.failing_since is None:
            self.failing_since = now
        self.failures += 1
        self.host = str(info.get("host") or self.host)
        self.last_error = str(info.get("message") or self.last_error)

    def never_reached(self) -> bool:
        """No attempt has connected yet, and at least one has failed to."""
        return not self.reached and self.failing_since is not None

    def verdict(self, now: float) -> str | None:
        """The stop message once the run has failed to connect for `after_s`, else None."""
        if self.failing_since is None or self.reached or now - self.failing_since < self.after_s:
            return None
        return (
            f"cannot reach the API at {self.host or self.where}: every call failed to connect for"
            f" {now - self.failing_since:.0f} s ({self.failures} attempts; last: {self.last_error})."
            f" Check the base URL {self.where} (set by provider.base_url, else ANTHROPIC_BASE_URL),"
            " the network and any proxy (HTTPS_PROXY, NO_PROXY); the same command resumes the run"
        )
