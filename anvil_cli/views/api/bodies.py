"""Reading request bodies: JSON, the jobs of `POST /jobs`, the agents of `POST /scale`.
Every problem becomes an `ApiError` (400) with a reason a person can act on."""

from __future__ import annotations

import json
from typing import Any, Final

from anvil_cli.views.api.errors import ApiError

MAX_BODY_BYTES = 16 * 1024 * 1024  # aiohttp's client_max_size: a larger body is answered 413
# POST /jobs: the controller validates a request's jobs under its lock (one 15 MB request of a
# million jobs held it for 52 s and took ~1 GB): more than this is answered 413 (`TooManyJobs`)
MAX_JOBS_PER_REQUEST: Final = 1_000
JOBS_SHAPES = 'a job object, a list of job objects, or {"jobs": [...]}'


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body; 400 if empty, not UTF-8, not JSON or absurdly nested."""
    if not raw.strip():
        raise ApiError(400, "the body is empty: expected JSON")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError:  # int() refuses more than 4,300 digits (CVE-2020-10735)
        raise ApiError(400, "the body holds an integer longer than 4,300 digits") from None
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply") from None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def jobs_from(body: Any) -> list[dict[str, Any]]:
    """The raw jobs of a `POST /jobs` body (validated later, by the controller)."""
    if isinstance(body, dict) and "jobs" in body:
        extra = sorted(str(k) for k in body if k != "jobs")
        if extra:
            raise ApiError(400, f"unexpected key(s) beside 'jobs': {', '.join(extra)}")
        body = body["jobs"]
        if not isinstance(body, list):
            raise ApiError(400, f"'jobs' must be a list of job objects, got {_type_name(body)}")
    if isinstance(body, dict):
        return [body]
    if not isinstance(body, list):
        raise ApiError(400, f"expected {JOBS_SHAPES}; got {_type_name(body)}")
    if not body:
        raise ApiError(400, "no jobs in the body: expected at least one job")
    for i, job in enumerate(body):
        if not isinstance(job, dict):
            raise ApiError(400, f"jobs[{i}] must be a job object, got {_type_name(job)}")
    return body


def agents_from(body: Any) -> int:
    """The agent limit of a `POST /scale` body: `{"agents": N}`, N a whole number."""
    if not isinstance(body, dict) or "agents" not in body:
        raise ApiError(400, 'expected {"agents": N}')
    agents = body["agents"]
    if isinstance(agents, bool) or not isinstance(agents, int):
        raise ApiError(400, f"'agents' must be a whole number, got {_type_name(agents)} {agents!r}")
    extra = sorted(str(k) for k in body if k != "agents")
    if extra:
        raise ApiError(400, f"unexpected key(s) beside 'agents': {', '.join(extra)}")
    return agents
