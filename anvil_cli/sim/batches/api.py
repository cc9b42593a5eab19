"""HTTP handlers of the Message Batches endpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from anvil_cli.sim.batches.store import Batch, BatchStore, batch_json, check_requests
from anvil_cli.sim.core import SimCore
from anvil_cli.sim.errors import error_body
from anvil_cli.sim.http import error_response, json_response, new_request_id, read_json
from anvil_cli.sim.validation import check_message

RESULTS_TYPE = "application/binary"


class BatchHost(Protocol):
    """What the batch endpoints need of the simulator they serve in (`sim/app.py`'s `SimApp`)."""

    core: SimCore
    batches: BatchStore
    prefix: str  # "" or a simulated endpoint's "/e/{name}"
    clock: Callable[[], float]
    wall: Callable[[], float]

    def allowed(self, request: web.Request) -> bool: ...


def add_routes(app: web.Application, sim: BatchHost) -> None:
    handlers = BatchHandlers(sim)
    app.router.add_post("/v1/messages/batches", handlers.create)
    app.router.add_get("/v1/messages/batches", handlers.list)
    app.router.add_get("/v1/messages/batches/{batch_id}", handlers.retrieve)
    app.router.add_post("/v1/messages/batches/{batch_id}/cancel", handlers.cancel)
    app.router.add_get("/v1/messages/batches/{batch_id}/results", handlers.results)


def _base_url(request: web.Request, prefix: str) -> str:
    """This simulator's address as the client reached it (with a simulated endpoint's `/e/{name}`)."""
    return f"{request.scheme}://{request.host}{prefix}"


class BatchHandlers:
    """Create, retrieve, list, cancel and read the results of batches."""

    def __init__(self, sim: BatchHost) -> None:
        self.sim = sim
        self.store = sim.batches
        self.gets_to_fail = sim.core.config.batch_api_fail_first

    def _fault(self) -> web.Response | None:
        """A 529 while `batch_api_fail_first` GETs (retrieve, list, results) remain to fail."""
        if self.gets_to_fail <= 0:
            return None
        self.gets_to_fail -= 1
        return error_response(529, new_request_id())

    def run_item(self, params: dict[str, Any]) -> dict[str, Any]:
        """The result of one batch request (no rate limits: batches have their own)."""
        request_id = new_request_id()
        problem = check_message(params)
        if problem:
            return {"type": "errored", "error": error_body(400, request_id, problem)}
        params = {k: v for k, v in params.items() if k != "stream"}
        raw = json.dumps(params)
        outcome = self.sim.core.answer(
            params, self.sim.clock(), "@sim{" in raw, "cache_control" in raw, limited=False
        )
        if outcome.kind == "ok":
            return {"type": "succeeded", "message": outcome.body}
        status = outcome.status if outcome.kind == "error" else 500
        return {"type": "errored", "error": error_body(status, request_id, outcome.message, outcome.details)}

    def _found(self, request: web.Request) -> Batch | web.Response:
        request_id = new_request_id()
        if not self.sim.allowed(request):
            return error_response(401, request_id, "invalid x-api-key")
        fault = self._fault() if request.method == "GET" else None
        if fault is not None:
            return fault
        batch_id = request.match_info["batch_id"]
        batch = self.store.get(batch_id)
        if batch is None:
            return error_response(404, request_id, f"Message batch {batch_id!r} not found")
        self.store.settle(batch, self.sim.wall(), self.run_item)
        return batch

    def _json(self, request: web.Request, batch: Batch) -> web.Response:
        now_s = self.sim.wall()
        self.store.settle(batch, now_s, self.run_item)  # never "ended" with requests processing
        data = batch_json(batch, now_s, _base_url(request, self.sim.prefix))
        return json_response(data, headers={"request-id": new_request_id()})

    async def create(self, request: web.Request) -> web.StreamResponse:
        request_id = new_request_id()
        if not self.sim.allowed(request):
            return error_response(401, request_id, "invalid x-api-key")
        parsed = await read_json(request)
        problem = parsed if isinstance(parsed, str) else check_requests(parsed[0])
        if problem or isinstance(parsed, str):
            return error_response(400, request_id, problem)
        batch = self.store.create(parsed[0]["requests"], self.sim.wall())
        self.sim.core.stats.batch_created(len(batch.items))
        self.store.settle(batch, self.sim.wall(), self.run_item)
        return self._json(request, batch)

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        found = self._found(request)
        return found if isinstance(found, web.Response) else self._json(request, found)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        found = self._found(request)
        if isinstance(found, web.Response):
            return found
        self.store.cancel(found, self.sim.wall())
        return self._json(request, found)

    async def list(self, request: web.Request) -> web.StreamResponse:
        if not self.sim.allowed(request):
            return error_response(401, new_request_id(), "invalid x-api-key")
        fault = self._fault()
        if fault is not None:
            return fault
        query = request.query
        try:
            limit = max(1, min(1000, int(query.get("limit", "20"))))
        except ValueError:
            return error_response(400, new_request_id(), "limit: Input should be a valid integer")
        page, has_more = self.store.page(limit, query.get("after_id"), query.get("before_id"))
        now_s = self.sim.wall()
        for batch in page:
            self.store.settle(batch, now_s, self.run_item)
        data = [batch_json(b, now_s, _base_url(request, self.sim.prefix)) for b in page]
        return json_response(
            {
                "data": data,
                "has_more": has_more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def results(self, request: web.Request) -> web.StreamResponse:
        found = self._found(request)
        if isinstance(found, web.Response):
            return found
        if found.results is None:
            return error_response(400, new_request_id(), f"Message batch {found.id} has not ended yet")
        lines = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in found.results)
        return web.Response(
            body=lines.encode("utf-8"), headers={"request-id": new_request_id(), "content-type": RESULTS_TYPE}
        )
