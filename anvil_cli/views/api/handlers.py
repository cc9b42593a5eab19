"""The endpoints: each reads its input, calls the controller off the event loop, answers JSON."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from aiohttp import web

from anvil_cli.errors import AnvilError, BacklogFull, InputError, TooManyJobs, UnknownModel
from anvil_cli.views.api import openapi, prom
from anvil_cli.views.api.bodies import MAX_BODY_BYTES, agents_from, jobs_from, parse_json
from anvil_cli.views.api.controller import Controller
from anvil_cli.views.api.errors import ApiError
from anvil_cli.views.api.guard import TALLY
from anvil_cli.views.api.middleware import json_errors, json_response, require_token
from anvil_cli.views.web import ASSETS, PAGE, SECURITY_HEADERS, public_paths, read

T = TypeVar("T")
BREAKER_STATES = {"open": "open", "close": "closed"}
NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")  # a JSON number, nothing looser
# the web page, not the API: served without the token, left out of the OpenAPI document
PAGE_ROUTES = frozenset({("get", "/"), ("get", "/static/{name}")})
# liveness for load balancers and orchestrators, which hold no token: it says only that it is alive
HEALTHZ = "/healthz"
STATIC_CACHE = {"Cache-Control": "no-cache"}  # small files: the browser asks again each time

log = logging.getLogger("anvil_cli.views.api")


class Handlers:
    """The API's handlers over one controller; controller calls run in `executor`."""

    def __init__(self, controller: Controller, executor: Executor) -> None:
        self.controller = controller
        self.executor = executor

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a controller call in the executor; its errors become API errors."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, fn, *args)
        except UnknownModel as exc:
            raise ApiError(404, str(exc)) from None
        except TooManyJobs as exc:
            raise ApiError(413, str(exc)) from None
        except BacklogFull as exc:
            raise ApiError(429, str(exc)) from None
        except InputError as exc:
            n = len(exc.problems)
            problems = [str(p) for p in exc.problems]
            raise ApiError(400, f"{n} problem(s) found; nothing was added", {"problems": problems}) from None
        except AnvilError as exc:  # e.g. the run is ending: a conflict with the run's state
            raise ApiError(409, str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except Exception as exc:
            # Broad on purpose: this is the boundary between the controller and the client, and
            # what else a controller call raises is not an answer the client can act on (the
            # journal's sqlite3.Error or OSError, or a bug). Let through, aiohttp would answer a
            # text 500 outside the documented `{"error": ...}` shape; caught, it is logged with
            # its traceback for the run's owner (the controller never holds the token, so none is
            # in it), and the client is told only the exception's type (no paths, no job text).
            log.error("API call %s failed", getattr(fn, "__name__", fn), exc_info=exc)
            raise ApiError(500, f"internal error ({type(exc).__name__}); see the run's log") from None

    async def healthz(self, request: web.Request) -> web.Response:
        """Served without the token: `{"ok": true}` and nothing of the run."""
        return json_response({"ok": True})

    async def openapi_doc(self, request: web.Request) -> web.Response:
        return json_response(openapi.document())

    async def status(self, request: web.Request) -> web.Response:
        return json_response(await self.call(self.controller.status))

    async def series(self, request: web.Request) -> web.Response:
        since = since_from(request.query.get("since"))
        return json_response(await self.call(self.controller.series, since))

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=read(PAGE), content_type="text/html", charset="utf-8", headers=STATIC_CACHE)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise ApiError(404, f"no such file: {request.path}")
        ctype = ASSETS[name][1]
        return web.Response(body=read(name), content_type=ctype, charset="utf-8", headers=STATIC_CACHE)

    async def metrics(self, request: web.Request) -> web.Response:
        tally = request.app.get(TALLY)
        errors = None if tally is None else tally.total
        body = await self.call(lambda: prom.render(self.controller.status(), errors))
        return web.Response(body=body, headers={"Content-Type": prom.CONTENT_TYPE})

    async def job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        job = await self.call(self.controller.job, job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} in this run")
        return json_response(job)

    async def add_jobs(self, request: web.Request) -> web.Response:
        raw_jobs = jobs_from(parse_json(await request.read()))
        ids = await self.call(self.controller.add_jobs, raw_jobs)  # committed once it returns
        return json_response({"accepted": ids}, status=202)

    async def scale(self, request: web.Request) -> web.Response:
        agents = agents_from(parse_json(await request.read()))
        return json_response({"agents": await self.call(self.controller.scale, agents)})

    async def breaker(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        state = BREAKER_STATES[request.match_info["action"]]
        await self.call(self.controller.set_breaker, model, state)
        return json_response({"ok": True, "model": model, "state": state})

    async def pause(self, request: web.Request) -> web.Response:
        await self.call(self.controller.pause)
        return json_response({"ok": True, "paused": True})

    async def resume(self, request: web.Request) -> web.Response:
        await self.call(self.controller.resume)
        return json_response({"ok": True, "paused": False})

    async def drain(self, request: web.Request) -> web.Response:
        await self.call(self.controller.drain)
        return json_response({"ok": True, "draining": True})


def since_from(raw: str | None) -> float | None:
    """`?since=` of GET /series: Unix seconds written as a JSON number, or absent."""
    if raw is None:
        return None
    since = float(raw) if NUMBER.fullmatch(raw) else math.nan
    if not math.isfinite(since):
        raise ApiError(400, f"since must be a time in Unix seconds, got {raw[:40]!r}")
    return since


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, data or page: the strict CSP and its companions; data is never cached."""
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")


def build_app(controller: Controller, token: str, executor: Executor) -> web.Application:
    """The aiohttp application: routes, token check (not for the page, its files and /healthz),
    JSON errors."""
    h = Handlers(controller, executor)
    public = public_paths() | {HEALTHZ}
    app = web.Application(
        middlewares=[json_errors, require_token(token, public)], client_max_size=MAX_BODY_BYTES
    )
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", h.page)
    app.router.add_get("/static/{name}", h.asset)
    app.router.add_get(HEALTHZ, h.healthz)
    app.router.add_get("/openapi.json", h.openapi_doc)  # every route is described there
    app.router.add_get("/status", h.status)
    app.router.add_get("/series", h.series)
    app.router.add_get("/metrics", h.metrics)
    app.router.add_get("/jobs/{job_id:.+}", h.job)
    app.router.add_post("/jobs", h.add_jobs)
    app.router.add_post("/scale", h.scale)
    app.router.add_post("/breakers/{model}/{action:open|close}", h.breaker)
    app.router.add_post("/pause", h.pause)
    app.router.add_post("/resume", h.resume)
    app.router.add_post("/drain", h.drain)
    return app
