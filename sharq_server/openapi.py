"""The OpenAPI 3 description of the HTTP API, served at ``GET /openapi.json``.

Built from small pieces so each schema is written once; `tests/test_openapi.py`
checks that it names exactly the app's routes, and Schemathesis checks the live
server against it.
"""

from __future__ import annotations

import functools
from typing import Any

from sharq_core import __version__
from sharq_core.tokens import ROLES

IDENTIFIER = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}
IDENTIFIERS = {"type": "array", "items": IDENTIFIER}
INTEGER = {"type": "integer"}
OBJECT = {"type": "object"}
PURGE = {"type": "object", "properties": {"purge_all": {"type": "boolean"}}}
COUNTS = {
    "type": "object",
    "description": "10 per-minute buckets keyed by the minute's start in epoch ms",
    "additionalProperties": {"type": "integer"},
    "minProperties": 10,
    "maxProperties": 10,
}
JOB_FIELDS = {
    "job_id": IDENTIFIER,
    "payload": {"description": "any JSON value"},
    "interval": {"type": "integer", "minimum": 0, "maximum": 10**12, "description": "ms between two dequeues"},
    # optional: null or absent means the config's default / no limit
    "requeue_limit": {"type": ["integer", "null"], "minimum": -1, "maximum": 10**9},
    "max_queued_length": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**12},
    "delay_ms": {"type": ["integer", "null"], "minimum": 0, "maximum": 10**12, "description": "schedule it"},
    "not_before": {"type": ["integer", "null"], "minimum": 0, "maximum": 10**13, "description": "epoch ms"},
}
DEQUEUED_JOB = {
    "type": "object",
    "required": ["queue_id", "job_id", "payload", "requeues_remaining", "current_queue_length"],
    "properties": {
        "queue_id": IDENTIFIER,
        "job_id": IDENTIFIER,
        "payload": {},
        "requeues_remaining": {"type": "integer", "minimum": -1},
        "current_queue_length": {"type": "integer", "minimum": 0},
        "dequeued_at": {"type": "integer", "description": "Redis time of the dequeue, epoch ms"},
        "receipt": {"type": "string", "description": "names this delivery; give it to finish, touch and fail"},
        "expires_at": {"type": "integer", "description": "when the job returns to its queue unless finished, epoch ms"},
    },
}
RECEIPT = {"type": ["string", "null"], "pattern": "^[0-9a-f]{16}\\.[0-9]{1,3}$"}
FAILURE = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {"status": {"const": "failure"}, "message": {"type": "string"}},
}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _body(required: list[str], **properties: Any) -> dict[str, Any]:
    """A request body: a field it does not list is refused (400)."""
    return {**_obj(required, **properties), "additionalProperties": False}


def _success(**properties: Any) -> dict[str, Any]:
    return _obj(["status", *properties], status={"const": "success"}, **properties)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": "invalid input; nothing changed",
    "401": "missing or wrong bearer token (when auth_tokens is set)",
    "403": "the token's role (or its queue types) does not allow this request",
    "404": "not found",
    "413": "request body too large",
    "503": "Redis unavailable or refusing writes, or fewer replicas than `wait_replicas` confirmed the change"
    " (`reason`); whether the request took effect is unknown",
}


def _operation(summary: str, ok: tuple[str, dict[str, Any]], body: dict[str, Any] | None = None, **extra: Any) -> dict:
    responses = {code: _json(FAILURE, why) for code, why in _ERRORS.items()}
    responses[ok[0]] = _json(ok[1], summary)
    responses.update(extra.pop("responses", {}))
    operation: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _page(media: str) -> dict[str, Any]:
    return {"description": "a file of the dashboard", "content": {media: {"schema": {"type": "string"}}}}


def _params(*names: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": IDENTIFIER} for name in names]


def _query(name: str, minimum: int, maximum: int) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return {"name": name, "in": "query", "required": False, "schema": schema}


QUEUED = _obj(["status"], status={"enum": ["queued", "scheduled"]})
NOT_READY = _json(
    {**FAILURE, "properties": {**FAILURE["properties"], "retry_after_ms": {"type": ["integer", "null"]}}},
    "no job is ready; retry_after_ms says when the earliest is due (null: none queued)",
)
DEQUEUE = _operation(
    "Dequeue the job due first across the type's queues (or up to `count` jobs)",
    ("200", {"oneOf": [{**DEQUEUED_JOB, "properties": {**DEQUEUED_JOB["properties"], "status": {"const": "success"}}},
                       _success(jobs={"type": "array", "items": DEQUEUED_JOB})]}),
    parameters=[_query("count", 1, 100), _query("wait", 0, 30)],
    responses={"404": NOT_READY},
)  # fmt: skip
STALE = {"409": _json(FAILURE, "the receipt is from an earlier delivery of the job; nothing changed")}


def _receipt_body(**more: Any) -> dict[str, Any]:
    """An optional body naming the delivery (`receipt`) and, for fail, more."""
    return {"required": False, "content": {"application/json": {"schema": _body([], receipt=RECEIPT, **more)}}}


LIMIT_FIELDS = {
    "interval": {"type": ["integer", "null"], "minimum": 0, "maximum": 10**12},
    "burst": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**6},
    "max_active": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**6},
}
_SOURCED = _obj(
    ["value", "source"], value={"type": ["integer", "null"]}, source={"enum": ["override", "last enqueue", "default"]}
)
EFFECTIVE = _obj(["interval", "burst", "max_active"], interval=_SOURCED, burst=_SOURCED, max_active=_SOURCED)
LIMITS = _success(queue_id=IDENTIFIER, limits=EFFECTIVE)
PAUSED = _success(paused_until={"type": ["integer", "null"], "description": "null: until resumed"})
FOR_MS = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"for_ms": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**12}},
                "additionalProperties": False,
            }
        }
    },
}
QUEUE = _obj(
    ["queue_id", "queue_length", "active", "scheduled", "limits", "paused_until", "next_ready_at"],
    queue_id=IDENTIFIER,
    queue_length=INTEGER,
    active=INTEGER,
    scheduled=INTEGER,
    limits=EFFECTIVE,
    paused={"type": "boolean"},
    paused_until={"type": ["integer", "null"]},
    next_ready_at={"type": ["integer", "null"]},
    oldest_queued_age_ms={"type": ["integer", "null"]},
)
METRICS = _success(queue_types=IDENTIFIERS, enqueue_counts=COUNTS, dequeue_counts=COUNTS)
_PROMETHEUS_TEXT = {"schema": {"type": "string"}}
METRICS_OVERALL = _operation(
    "Queue types and overall per-minute counts; the Prometheus exposition when Accept prefers"
    " text/plain or application/openmetrics-text, or with ?format=prometheus",
    ("200", METRICS),
    parameters=[{"name": "format", "in": "query", "required": False, "schema": {"enum": ["prometheus", "json"]}}],
)
METRICS_OVERALL["responses"]["200"]["content"].update(
    {"text/plain": _PROMETHEUS_TEXT, "application/openmetrics-text": _PROMETHEUS_TEXT}
)


NULLABLE_TYPES = {"oneOf": [IDENTIFIERS, {"type": "null"}]}


def _paths() -> dict[str, Any]:
    job = ("queue_type", "queue_id", "job_id")
    return {
        "/": {"get": _operation("Greeting", ("200", _obj(["message"], message={"type": "string"})))},
        "/enqueue/{queue_type}/{queue_id}/": {
            "parameters": _params("queue_type", "queue_id"),
            "post": _operation(
                "Enqueue one job",
                ("201", QUEUED),
                _body(["job_id", "payload", "interval"], **JOB_FIELDS),
                responses={
                    "409": _json(
                        FAILURE,
                        "job_id already known in this queue: `state` is queued, active, dead, or finished"
                        " (within dedupe_window_ms)",
                    ),
                    "429": _json(FAILURE, "queue already holds max_queued_length jobs"),
                },
            ),
        },
        "/enqueue/{queue_type}/": {
            "parameters": _params("queue_type"),
            "post": _operation(
                "Enqueue up to 100 jobs of one type atomically, one result each",
                ("200", _success(results={"type": "array", "items": _obj(["queue_id", "job_id", "status"])})),
                _body(
                    ["jobs"],
                    jobs={
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 100,
                        "items": _body(
                            ["queue_id", "job_id", "payload", "interval"], queue_id=IDENTIFIER, **JOB_FIELDS
                        ),
                    },
                ),
            ),
        },
        "/dequeue/": {"get": DEQUEUE},
        "/dequeue/{queue_type}/": {"parameters": _params("queue_type"), "get": DEQUEUE},
        "/finish/{queue_type}/{queue_id}/{job_id}/": {
            "parameters": _params(*job),
            "post": {
                **_operation("Acknowledge an active job", ("200", _success()), responses=STALE),
                "requestBody": _receipt_body(),
            },
        },
        "/finish/{queue_type}/": {
            "parameters": _params("queue_type"),
            "post": _operation(
                "Acknowledge up to 100 jobs atomically, one result each; with `next`, also take up to that many",
                (
                    "200",
                    {
                        **_success(results={"type": "array", "items": _obj(["queue_id", "job_id", "status"])}),
                        "properties": {
                            "status": {"const": "success"},
                            "results": {"type": "array", "items": _obj(["queue_id", "job_id", "status"])},
                            "jobs": {"type": "array", "items": DEQUEUED_JOB, "description": "with ?next= only"},
                            "retry_after_ms": {"type": ["integer", "null"]},
                        },
                    },
                ),
                _body(
                    ["jobs"],
                    jobs={
                        "type": "array",
                        "maxItems": 100,
                        "items": _body(["queue_id", "job_id"], queue_id=IDENTIFIER, job_id=IDENTIFIER, receipt=RECEIPT),
                    },
                ),
                parameters=[_query("next", 0, 100), _query("wait", 0, 30)],
            ),
        },
        "/touch/{queue_type}/{queue_id}/{job_id}/": {
            "parameters": _params(*job),
            "post": {
                **_operation(
                    "Heartbeat: push an active job's expiry out",
                    ("200", _success(expires_at={"type": "integer"})),
                    responses=STALE,
                ),
                "requestBody": _receipt_body(),
            },
        },
        "/fail/{queue_type}/{queue_id}/{job_id}/": {
            "parameters": _params(*job),
            "post": {
                **_operation(
                    "A job failed: back to the front of its queue (now or after retry_after_ms), or dead",
                    ("200", _success(state={"enum": ["queued", "retrying", "dead"]})),
                    responses=STALE,
                ),
                "requestBody": _receipt_body(
                    error={"type": ["string", "null"], "maxLength": 4000},
                    retry_after_ms={"type": ["integer", "null"], "minimum": 0, "maximum": 10**12},
                    dead={"type": "boolean"},
                    throttle={"type": "boolean", "description": "upstream said 429: pause the queue retry_after_ms"},
                ),
            },
        },
        "/job/{queue_type}/{queue_id}/{job_id}/": {
            "parameters": _params(*job),
            "get": _operation(
                "Where a job is: queued, active (with expires_at), retrying (with due_at), dead, or finished"
                " (within the dedupe window); last_error when a worker reported one",
                ("200", _success(state={"enum": ["queued", "scheduled", "active", "retrying", "dead", "finished"]})),
            ),
        },
        "/interval/{queue_type}/{queue_id}/": {
            "parameters": _params("queue_type", "queue_id"),
            "post": _operation(
                "Change a queue's rate limit",
                ("200", _success()),
                _body(["interval"], interval=JOB_FIELDS["interval"]),
            ),
        },
        "/metrics/": {"get": METRICS_OVERALL},
        "/metrics/{queue_type}/": {
            "parameters": _params("queue_type"),
            "get": _operation(
                "Queue ids holding queued or active jobs, in id order, a page at a time",
                ("200", _success(queue_ids={"type": "array", "items": IDENTIFIER}, total={"type": "integer"})),
                parameters=[_query("limit", 1, 10_000), _query("offset", 0, 10**9)],
            ),
        },
        "/metrics/{queue_type}/{queue_id}/": {
            "parameters": _params("queue_type", "queue_id"),
            "get": _operation(
                "One queue's length and per-minute counts",
                ("200", _success(queue_length={"type": "integer"}, enqueue_counts=COUNTS, dequeue_counts=COUNTS)),
            ),
        },
        "/deletequeue/{queue_type}/{queue_id}/": {
            "parameters": _params("queue_type", "queue_id"),
            "delete": {
                **_operation(
                    "Delete queued jobs (purge_all: active jobs too)", ("200", _success(deleted={"type": "integer"}))
                ),
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {**PURGE, "additionalProperties": False}}},
                },
            },
        },
        "/deadletter/{queue_type}/": {
            "parameters": _params("queue_type"),
            "get": _operation(
                "Dead-lettered jobs of a type, oldest first",
                ("200", _success(total={"type": "integer"}, jobs={"type": "array"})),
                parameters=[_query("limit", 1, 1000), _query("offset", 0, 10**9)],
            ),
        },
        "/deadletter/{queue_type}/{queue_id}/{job_id}/retry/": {
            "parameters": _params(*job),
            "post": _operation(
                "Requeue a dead-lettered job",
                ("200", QUEUED),
                responses={"409": _json(FAILURE, "job_id is queued or active again")},
            ),
        },
        "/deadletter/{queue_type}/{queue_id}/{job_id}/": {
            "parameters": _params(*job),
            "delete": _operation("Delete a dead-lettered job", ("200", _success())),
        },
        "/limits/{queue_type}/{queue_id}/": {
            "parameters": _params("queue_type", "queue_id"),
            "put": _operation(
                "Set the queue's own limits (a value sets one, null clears it); they win over enqueues'",
                ("200", LIMITS),
                _body([], **LIMIT_FIELDS),
            ),
            "get": _operation("The queue's effective limits and where each comes from", ("200", LIMITS)),
            "delete": _operation("Drop the queue's own limits", ("200", LIMITS)),
        },
        "/pause/{queue_type}/": {
            "parameters": _params("queue_type"),
            "post": {**_operation("Pause the whole type", ("200", PAUSED)), "requestBody": FOR_MS},
        },
        "/pause/{queue_type}/{queue_id}/": {
            "parameters": _params("queue_type", "queue_id"),
            "post": {**_operation("Pause one queue", ("200", PAUSED)), "requestBody": FOR_MS},
        },
        "/resume/{queue_type}/": {
            "parameters": _params("queue_type"),
            "post": _operation("Resume the whole type", ("200", _success())),
        },
        "/resume/{queue_type}/{queue_id}/": {
            "parameters": _params("queue_type", "queue_id"),
            "post": _operation("Resume one queue", ("200", _success())),
        },
        "/queue/{queue_type}/{queue_id}/": {
            "parameters": _params("queue_type", "queue_id"),
            "get": _operation("One queue now: lengths, limits, pause, next ready, oldest job's age", ("200", QUEUE)),
        },
        "/queues/{queue_type}/": {
            "parameters": _params("queue_type"),
            "get": _operation(
                "A page of the type's queues in queue_id order",
                ("200", _success(total={"type": "integer"}, queues={"type": "array", "items": QUEUE})),
                parameters=[_query("limit", 1, 1000), _query("offset", 0, 10**9)],
            ),
        },
        "/stats/{queue_type}/": {
            "parameters": _params("queue_type"),
            "get": _operation(
                "One type's jobs and queues by state, counters since it began, per-minute counts",
                ("200", _success(jobs=OBJECT, queues=OBJECT, counters=OBJECT, enqueue_counts=COUNTS)),
            ),
        },
        "/dashboard/": {"get": {"summary": "The dashboard page", "responses": {"200": _page("text/html")}}},
        "/dashboard/{asset}": {
            "parameters": [{"name": "asset", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "summary": "The dashboard's assets",
                "responses": {"200": _page("*/*"), "404": _json(FAILURE, "no such asset")},
            },
        },
        "/deepstatus/": {
            "get": _operation(
                "Redis answers and accepts writes; `parked`: long polls the answering worker process holds",
                ("200", _success(parked={"type": "integer"})),
            )
        },
        "/whoami/": {
            "get": _operation(
                "The token's role and queue types (null: every type); with auth off, admin",
                ("200", _success(auth={"enum": ["off", "required"]}, role={"enum": list(ROLES)}, types=NULLABLE_TYPES)),
            )
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document, built once per process."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "SharQ", "version": __version__, "description": "Rate-limited, multi-tenant job queue."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"bearer": []}],
        "paths": _paths(),
    }
