"""Delivery of alerts to `alerts.webhooks`: each change posted as Slack-compatible JSON
(`anvil_cli.alerts.slack`), off the run's tick.

Each webhook has its own lane: a bounded queue and one thread posting from it, so a receiver
that is down or slow delays nothing else (a full queue drops its oldest alert, counted and
logged). A post is retried with tenacity: `ATTEMPTS` attempts, exponential back-off; retried on
a connection error, a timeout, 429 (its Retry-After honoured up to `RETRY_AFTER_CAP_S`) and 5xx,
not on another status. At a run's end `flush` waits a bounded time for what is queued.

The URL and header values are secrets (a Slack webhook's URL is its credential): they are read
in the driver from the variables the settings name (through `config.vault`, which keeps them
out of every other process's environment) and never logged: a message names the webhook by its
number and variable (`webhook 1 (SLACK_WEBHOOK_URL)`) and gives the HTTP status. urllib is used
rather than an HTTP client that logs each request's URL.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import urlsplit

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from anvil_cli.alerts.rules import SEVERITY_ORDER, AlertChange
from anvil_cli.alerts.slack import webhook_body
from anvil_cli.config.settings import Alerts

log = logging.getLogger(__name__)

ATTEMPTS: Final = 3
BACKOFF_BASE_S: Final = 1.0  # 1 s, then 2 s
BACKOFF_MAX_S: Final = 10.0
RETRY_AFTER_CAP_S: Final = 30.0  # a receiver asking for longer is not waited for
QUEUE_MAX: Final = 50  # alerts waiting per webhook; beyond, the oldest is dropped
FLUSH_S: Final = 5.0  # the longest a run's end waits for queued alerts


@dataclass(frozen=True)
class Webhook:
    """One webhook resolved in the driver: its URL and header values (secrets) read."""

    label: str  # `webhook 1 (SLACK_WEBHOOK_URL)`: what messages call it
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)
    min_severity: str = "medium"
    timeout_s: float = 5.0

    def wants(self, change: AlertChange) -> bool:
        """The alert is at least as severe as `min_severity`."""
        return SEVERITY_ORDER.get(change.alert["severity"], 9) <= SEVERITY_ORDER[self.min_severity]


def resolve_webhooks(alerts: Alerts, lookup: Callable[[str], str | None]) -> list[Webhook]:
    """The webhooks of `alerts.webhooks`, their variables read by `lookup` (`vault.secret`). The
    settings' check made sure they are set; one unset since is skipped, and said."""
    hooks = []
    for i, entry in enumerate(alerts.webhooks, 1):
        label = f"webhook {i} ({entry.url_env or _host(entry.url or '')})"
        url = lookup(entry.url_env) if entry.url_env else entry.url
        headers = {name: lookup(var) for name, var in entry.headers.items()}
        if not url or any(v is None for v in headers.values()):
            log.warning("%s: a variable it names is not set; alerts are not sent to it", label)
            continue
        values = {k: v for k, v in headers.items() if v is not None}
        hooks.append(Webhook(label, url, values, entry.min_severity, entry.timeout_s))
    return hooks


def _host(url: str) -> str:
    return urlsplit(url).hostname or "url"


class PostFailed(Exception):
    """A post that did not succeed; `retry`: worth another attempt. Its text holds no secret."""

    def __init__(self, reason: str, *, retry: bool, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry = retry
        self.retry_after_s = retry_after_s


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is answered as the 3xx it is: the headers go nowhere else


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(hook: Webhook, body: bytes) -> int:
    """POST `body` once; the HTTP status, or PostFailed (never an exception naming the URL)."""
    request = urllib.request.Request(hook.url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in hook.headers.items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=hook.timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
        exc.close()
        raise PostFailed(
            f"HTTP {status}", retry=status == 429 or status >= 500, retry_after_s=retry_after
        ) from None
    except urllib.error.URLError as exc:
        raise PostFailed(f"could not connect ({_why(exc.reason)})", retry=True) from None
    except TimeoutError:
        raise PostFailed(f"no answer in {hook.timeout_s:g}s", retry=True) from None
    except (OSError, http.client.HTTPException) as exc:
        raise PostFailed(f"connection failed ({_why(exc)})", retry=True) from None
    except ValueError:  # a header value http.client refuses (its message would show it)
        raise PostFailed("a header value is not valid in HTTP", retry=False) from None


def _why(reason: object) -> str:
    """An error's kind and errno text, never its message (which may name the host or the URL)."""
    if isinstance(reason, TimeoutError):
        return "timed out"
    strerror = getattr(reason, "strerror", None)
    return f"{type(reason).__name__}: {strerror}" if strerror else type(reason).__name__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff_s(state: RetryCallState) -> float:
    """Retry-After when the receiver gave one (at most `RETRY_AFTER_CAP_S`), else 1 s, 2 s, ..."""
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, PostFailed) and exc.retry_after_s is not None:
        return float(min(exc.retry_after_s, RETRY_AFTER_CAP_S))
    return float(min(BACKOFF_BASE_S * 2.0 ** (state.attempt_number - 1), BACKOFF_MAX_S))


class _Lane:
    """One webhook's queue and the thread posting from it."""

    def __init__(self, hook: Webhook, sleep: Callable[[float], None]) -> None:
        self.hook = hook
        self.sleep = sleep
        self.queue: deque[bytes] = deque()
        self.cond = threading.Condition()
        self.busy = False
        self.closed = False
        self.dropped = 0
        self.delivered = 0
        self.thread: threading.Thread | None = None

    def put(self, body: bytes) -> None:
        with self.cond:
            if len(self.queue) >= QUEUE_MAX:
                self.queue.popleft()
                self.dropped += 1
                log.warning(
                    "%s: its receiver is not keeping up; dropped the oldest alert (%d dropped)",
                    self.hook.label,
                    self.dropped,
                )
            self.queue.append(body)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="anvil-webhook", daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def pending(self) -> int:
        with self.cond:
            return len(self.queue) + (1 if self.busy else 0)

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closed:
                    self.cond.wait()
                if not self.queue:
                    return
                body = self.queue.popleft()
                self.busy = True
            try:
                self._deliver(body)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def _deliver(self, body: bytes) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(ATTEMPTS),
            wait=backoff_s,
            retry=retry_if_exception(lambda e: isinstance(e, PostFailed) and e.retry),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            retrying(post, self.hook, body)
        except PostFailed as exc:
            log.warning("%s: alert not delivered: %s", self.hook.label, exc)
        except Exception as exc:  # never let the lane's thread die
            log.warning("%s: alert not delivered: %s", self.hook.label, type(exc).__name__)
        else:
            with self.cond:
                self.delivered += 1


class WebhookSender:
    """Posts alert changes to the run's webhooks, each on its own lane; `send` never blocks."""

    def __init__(self, hooks: list[Webhook], *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.lanes = [_Lane(hook, sleep) for hook in hooks]

    def send(self, change: AlertChange, run_id: str) -> None:
        """Queue the change for every webhook whose `min_severity` it reaches."""
        lanes = [lane for lane in self.lanes if lane.hook.wants(change)]
        if not lanes:
            return
        body = json.dumps(webhook_body(change, run_id)).encode()
        for lane in lanes:
            lane.put(body)

    def pending(self) -> int:
        """Alerts queued or being posted, over every webhook."""
        return sum(lane.pending() for lane in self.lanes)

    def dropped(self) -> int:
        return sum(lane.dropped for lane in self.lanes)

    def flush(self, timeout_s: float = FLUSH_S, clock: Callable[[], float] = time.monotonic) -> int:
        """Wait up to `timeout_s` for the queued alerts to be posted (a run's end); returns how
        many were not, and says so."""
        deadline = clock() + timeout_s
        for lane in self.lanes:
            with lane.cond:
                while lane.queue or lane.busy:
                    left = deadline - clock()
                    if left <= 0:
                        break
                    lane.cond.wait(left)
        left_over = 0
        for lane in self.lanes:
            n = lane.pending()
            left_over += n
            if n:
                log.warning("%s: %d alert(s) not delivered by the end of the run", lane.hook.label, n)
        return left_over

    def close(self) -> None:
        """Drop what is queued and let every lane's thread end (after the post under way)."""
        for lane in self.lanes:
            with lane.cond:
                lane.queue.clear()
                lane.closed = True
                lane.cond.notify_all()


def webhook_sender(alerts: Alerts, lookup: Callable[[str], str | None]) -> WebhookSender | None:
    """The sender for `alerts.webhooks`, or None when there are none (nothing is started)."""
    if not alerts.webhooks:
        return None
    return WebhookSender(resolve_webhooks(alerts, lookup))
