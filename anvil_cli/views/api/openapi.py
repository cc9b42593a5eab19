"""The API's OpenAPI 3.1 document, as data: every route, its token, its bodies and every answer.

Served at `GET /openapi.json` (with the token, like every request). The status body's schema is
translated from the TypedDicts of the snapshot (`anvil_cli.snapshot.types`, `RunStatus`); the
other schemas are written in `openapi_schemas`, the paths here, each beside the limits it quotes.
A route added to the app goes into `PATHS`
too: `tests/test_api_openapi.py` compares the app's router with it, and fuzzes a live run
against the whole document with schemathesis.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from anvil_cli import __version__
from anvil_cli.snapshot.series import MAX_POINTS, Sample
from anvil_cli.snapshot.status import RunStatus
from anvil_cli.views.api.bodies import MAX_BODY_BYTES, MAX_JOBS_PER_REQUEST
from anvil_cli.views.api.openapi_schemas import REF, closed, ref, written_schemas
from anvil_cli.views.api.typed_schema import JsonSchema, SchemaSet

JSON: Final = "application/json"
PROMETHEUS_TEXT: Final = "text/plain"  # version=0.0.4; charset=utf-8


def json_body(schema: JsonSchema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = json_body(ref("Error"), description)
    if headers:
        answer["headers"] = headers
    return answer


UNAUTHORIZED: Final = error(
    "No `Authorization: Bearer <token>` header, or the wrong token.",
    {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Always `Bearer realm="anvil"`.'}},
)
CONFLICT: Final = error("The run's state refuses the request (it is ending, say).")
INTERNAL: Final = error("An unexpected error inside the run (logged there; a bug to report).")
TOO_LARGE: Final = error(f"The body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB.")


def operation(
    op_id: str,
    summary: str,
    answers: dict[int, Any],
    *,
    body: JsonSchema | None = None,
    parameters: list[dict[str, Any]] | None = None,
    controller: bool = True,
    public: bool = False,
) -> dict[str, Any]:
    """One operation; each needs the token unless `public`, and those that ask the run can meet
    a 409/500."""
    responses = answers if public else {**answers, 401: UNAUTHORIZED}
    if controller:
        responses |= {409: CONFLICT, 500: INTERNAL}
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "responses": {str(code): responses[code] for code in sorted(responses)},
    }
    if public:
        op["security"] = []  # overrides the document's bearer requirement
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return op


def path_parameter(name: str, schema: JsonSchema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


OK: Final = {"const": True}
PATHS: Final[dict[str, dict[str, Any]]] = {
    "/healthz": {
        "get": operation(
            "healthz",
            "Liveness, without the token: says that the API is serving and nothing else",
            {200: json_body(closed({"ok": OK}), "Serving.")},
            controller=False,
            public=True,
        )
    },
    "/openapi.json": {
        "get": operation(
            "openapi",
            "This document",
            {200: json_body({"type": "object"}, "The OpenAPI 3.1 document.")},
            controller=False,
        )
    },
    "/status": {
        "get": operation(
            "status",
            "The run's live snapshot and counts: the JSON of `anvil status --json` (docs/metrics.md)",
            {200: json_body(ref("RunStatus"), "The run's status, about a second old.")},
        )
    },
    "/series": {
        "get": operation(
            "series",
            "The run's samples over time, one a second (what the web page and `anvil report` chart)",
            {
                200: json_body(
                    closed(
                        {
                            "run_id": {"type": "string"},
                            "now": {"type": "number", "description": "The server's clock, Unix seconds."},
                            "samples": {"type": "array", "items": ref("Sample"), "maxItems": MAX_POINTS},
                            "downsampled": {
                                "type": "boolean",
                                "description": "Thinned to evenly spaced ones.",
                            },
                        }
                    ),
                    f"The samples taken after `since`, oldest first; at most {MAX_POINTS:,}, evenly spaced.",
                ),
                400: error("`since` is not a number of Unix seconds."),
            },
            parameters=[
                {
                    "name": "since",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "number"},
                    "description": "Only samples taken after this time (Unix seconds); all when absent.",
                }
            ],
        )
    },
    "/metrics": {
        "get": operation(
            "metrics",
            "Prometheus text format, version 0.0.4 (the series: docs/metrics.md)",
            {
                200: {
                    "description": "The run's series.",
                    "content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}},
                }
            },
        )
    },
    "/jobs/{job_id}": {
        "get": operation(
            "job",
            "One job's state and result",
            {200: json_body(ref("JobState"), "The job."), 404: error("No job with this id in the run.")},
            parameters=[path_parameter("job_id", {"type": "string", "minLength": 1}, "The job's id.")],
        )
    },
    "/jobs": {
        "post": operation(
            "add_jobs",
            "Add jobs; they are committed to the journal before the 202",
            {
                202: json_body(
                    closed({"accepted": {"type": "array", "items": {"type": "string"}}}),
                    "Every job was added; their ids, in order.",
                ),
                400: error(
                    "The body is not one of the shapes, or a job is invalid: `problems` lists every"
                    " problem, and nothing was added."
                ),
                413: error(
                    f"The body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB, or holds more"
                    f" than {MAX_JOBS_PER_REQUEST:,} jobs."
                ),
                429: error("Too many jobs are waiting already; try again when some have run."),
            },
            body=ref("JobsBody"),
        )
    },
    "/scale": {
        "post": operation(
            "scale",
            "Set the agent limit, within the run's min_agents..max_agents",
            {
                200: json_body(closed({"agents": {"type": "integer"}}), "The agent limit now."),
                400: error('Not `{"agents": N}` with N a whole number within min_agents..max_agents.'),
                413: TOO_LARGE,
            },
            body=closed({"agents": {"type": "integer", "minimum": 1}}),
        )
    },
    "/breakers/{model}/{action}": {
        "post": operation(
            "breaker",
            "Force a model's circuit breaker open, or close it",
            {
                200: json_body(
                    closed({"ok": OK, "model": {"type": "string"}, "state": {"enum": ["open", "closed"]}}),
                    "The breaker is being set (the run applies it within a second).",
                ),
                404: error("An unknown model, or no such endpoint (the action is `open` or `close`)."),
            },
            parameters=[
                path_parameter("model", {"type": "string", "minLength": 1}, "A model id of the run."),
                path_parameter("action", {"enum": ["open", "close"]}, "What to do."),
            ],
        )
    },
    "/pause": {
        "post": operation(
            "pause",
            "Stop dispatching jobs (calls in flight continue)",
            {200: json_body(closed({"ok": OK, "paused": {"const": True}}), "Dispatching stops.")},
        )
    },
    "/resume": {
        "post": operation(
            "resume",
            "Dispatch again after a pause",
            {200: json_body(closed({"ok": OK, "paused": {"const": False}}), "Dispatching again.")},
        )
    },
    "/drain": {
        "post": operation(
            "drain",
            "Finish the calls in flight, dispatch nothing more, then end the run (exit 130, resumable)",
            {200: json_body(closed({"ok": OK, "draining": {"const": True}}), "The run is ending.")},
        )
    },
}


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (built once)."""
    typed = SchemaSet(REF)
    typed.ref(RunStatus)
    typed.ref(Sample)
    written = written_schemas()
    clash = written.keys() & typed.schemas.keys()
    assert not clash, f"a TypedDict and a written schema share a name: {clash}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Anvil run API",
            "version": __version__,
            "description": (
                "The HTTP API of one `anvil run --serve`. Every request needs the bearer token."
                ' Errors are JSON: `{"error": reason}`. An unknown path answers 404, a method a'
                " path does not have 405 with `Allow`. Not part of the API: `GET /` and"
                " `GET /static/{name}` serve the web page (no data, so no token)."
            ),
        },
        "paths": PATHS,
        "components": {
            "schemas": written | typed.schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
