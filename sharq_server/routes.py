"""Every endpoint declared once: path, method, body, query, answers and who may call it.

The app registers its views from this table (`serves`), reads bodies and query
arguments by it, auth takes each route's action from it, and the OpenAPI
document is built from it: a new route is one entry here and one view.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint

from sharq_core import validation as check
from sharq_core.base import MAX_BATCH, MAX_PAGE
from sharq_core.tokens import ROLES

from . import contract as c
from .longpoll import MAX_WAIT_S

api = Blueprint("sharq", __name__)
OPEN, ANY_TOKEN = "open", "any token"  # auth actions that need no role


@dataclasses.dataclass(frozen=True)
class Query:
    """A query argument: a whole number within bounds, or one of `choices`."""

    name: str
    minimum: int = 0
    maximum: int = 0
    default: int | None = None
    choices: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Route:
    """One method on one path; `operation_id` is also its Flask endpoint name."""

    operation_id: str
    method: str
    path: str
    summary: str
    action: str  # what a token's role must allow (auth.ROLE_ACTIONS), or OPEN / ANY_TOKEN
    answer: dict[str, Any]  # the success body's schema
    status: int = 200
    body: type[c.Body] | None = None
    body_required: bool = False
    query: tuple[Query, ...] = ()
    refusals: dict[int, tuple[str, type]] = dataclasses.field(default_factory=dict)  # beyond the usual errors
    defaults: dict[str, Any] | None = None  # path arguments a shorter path fills in
    media: tuple[str, ...] = ("application/json",)
    typeless: bool = False  # names no queue type, yet a type-limited token may read it

    @property
    def endpoint(self) -> str:
        return f"{api.name}.{self.operation_id}"

    @property
    def rule(self) -> str:
        """The path in Flask's form."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)

    def argument(self, name: str) -> Query:
        return next(query for query in self.query if query.name == name)


def ref(model: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def success(**properties: Any) -> dict[str, Any]:
    """A success answer's schema: status "success" and these fields, all present."""
    return {
        "type": "object",
        "required": ["status", *properties],
        "properties": {"status": {"const": "success"}, **properties},
    }


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


INTEGER, BOOLEAN, TEXT = {"type": "integer"}, {"type": "boolean"}, {"type": "string"}
NULLABLE_INTEGER = {"type": ["integer", "null"]}
IDENTIFIER = {"type": "string", "pattern": c.IDENTIFIER_PATTERN}
IDENTIFIERS = array(IDENTIFIER)
COUNTS = {
    "type": "object",
    "description": "10 per-minute buckets keyed by the minute's start in epoch ms",
    "additionalProperties": INTEGER,
    "minProperties": 10,
    "maxProperties": 10,
}
LIMITS = success(queue_id=IDENTIFIER, limits=ref(c.EffectiveLimits))
TYPE_LIMITS = success(
    queue_type=IDENTIFIER,
    shards=INTEGER,
    active={**NULLABLE_INTEGER, "description": "slots held, with max_active"},
    limits={"type": "object", "properties": {name: NULLABLE_INTEGER for name in ("interval", "burst", "max_active")}},
)
TYPE_SETTINGS = success(queue_type=IDENTIFIER, shards=INTEGER)
PAUSED = success(paused_until={**NULLABLE_INTEGER, "description": "null: until resumed"})
QUEUED = {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["queued", "scheduled"]}}}
RESULTS = array(ref(c.JobResult))
TAKEN = {"oneOf": [ref(c.DequeuedJob), success(jobs=array(ref(c.DequeuedJob)))]}
WAIT = Query("wait", 0, MAX_WAIT_S, 0)
PAGE = (Query("offset", 0, check.MAX_OFFSET, 0),)
STALE = {409: ("the receipt is from an earlier delivery of the job; nothing changed", c.Error)}
CAMPAIGN = {"allOf": [success(), ref(c.Campaign)]}
NO_CAMPAIGN = {404: ("no such campaign (never enqueued to, or forgotten after campaign_retention_ms)", c.Error)}
DUPLICATE = "job_id already known in this queue: `state` is queued, scheduled, active, dead or finished (dedupe window)"


def _routes(*routes: Route) -> dict[str, Route]:
    return {route.operation_id: route for route in routes}


ROUTES = _routes(
    Route("index", "GET", "/", "Greeting", OPEN, {"type": "object", "properties": {"message": TEXT}}),
    Route(
        "enqueue", "POST", "/enqueue/{queue_type}/{queue_id}/", "Enqueue one job", "enqueue", QUEUED, 201,
        c.NewJob, True, refusals={409: (DUPLICATE + "; or its campaign was cancelled", c.Error),
                                  429: ("queue holds max_queued_length jobs", c.Error)},
    ),
    Route(
        "enqueue_many", "POST", "/enqueue/{queue_type}/", "Enqueue up to 100 jobs of one type atomically, one result"
        " each", "enqueue", success(results=RESULTS), body=c.NewJobs, body_required=True,
    ),
    Route(
        "dequeue_default", "GET", "/dequeue/", "Dequeue from the type `default` (as `dequeue`)", "work",
        TAKEN,
        query=(Query("count", 1, MAX_BATCH), WAIT), refusals={404: ("no job is ready", c.NotReady)},
        defaults={"queue_type": "default"},
    ),
    Route(
        "dequeue", "GET", "/dequeue/{queue_type}/", "Dequeue the job due first across the type's queues (or up to"
        " `count` jobs); `wait` long-polls up to that many seconds", "work",
        TAKEN,
        query=(Query("count", 1, MAX_BATCH), WAIT), refusals={404: ("no job is ready", c.NotReady)},
    ),
    Route(
        "finish", "POST", "/finish/{queue_type}/{queue_id}/{job_id}/", "Acknowledge an active job", "work",
        success(), body=c.Finished, refusals=STALE,
    ),
    Route(
        "finish_many", "POST", "/finish/{queue_type}/", "Acknowledge up to 100 jobs atomically, one result each;"
        " with `next`, also take up to that many", "work",
        {**success(results=RESULTS), "properties": {**success(results=RESULTS)["properties"],
         "jobs": {**array(ref(c.DequeuedJob)), "description": "with ?next= only"}, "retry_after_ms": NULLABLE_INTEGER}},
        body=c.Acks, body_required=True, query=(Query("next", 0, MAX_BATCH, 0), WAIT),
    ),
    Route(
        "touch", "POST", "/touch/{queue_type}/{queue_id}/{job_id}/", "Heartbeat: push an active job's expiry out",
        "work", success(expires_at=INTEGER), body=c.Delivery, refusals=STALE,
    ),
    Route(
        "fail", "POST", "/fail/{queue_type}/{queue_id}/{job_id}/", "A job failed: back to the front of its queue"
        " (now or after retry_after_ms), or dead (expired: its deadline has passed)", "work",
        success(state={"enum": ["queued", "retrying", "dead", "expired"]}),
        body=c.Failed, refusals=STALE,
    ),
    Route(
        "job_status", "GET", "/job/{queue_type}/{queue_id}/{job_id}/",
        "Where a job is: queued, scheduled, active, retrying, dead, expired (a dead letter never handed out by its"
        " deadline, with expired_at), finished or cancelled by its campaign (within the dedupe window); last_error"
        " when a worker reported one; priority when above 0", "status",
        success(state={"enum": ["queued", "scheduled", "active", "retrying", "dead", "expired", "finished",
                                "cancelled"]}),
    ),
    Route(
        "campaigns", "GET", "/campaigns/{queue_type}/", "A page of the type's campaigns, newest first", "status",
        success(total=INTEGER, campaigns=array(ref(c.Campaign))), query=(Query("limit", 1, 1000, 100), *PAGE),
    ),
    Route(
        "campaign", "GET", "/campaigns/{queue_type}/{campaign}/", "A campaign's counts; `wait` long-polls up to that"
        " many seconds for it to be done", "status", CAMPAIGN, query=(WAIT,), refusals=NO_CAMPAIGN,
    ),
    Route(
        "on_done", "PUT", "/campaigns/{queue_type}/{campaign}/", "Set the job the campaign enqueues once done"
        " (once)", "enqueue", CAMPAIGN, body=c.CampaignSettings, body_required=True,
        refusals={409: ("the on_done job was enqueued already", c.Error)},
    ),
    Route(
        "cancel_campaign", "DELETE", "/campaigns/{queue_type}/{campaign}/", "Cancel: remove its queued and scheduled"
        " jobs, refuse new ones; active ones end as they would", "enqueue", CAMPAIGN, refusals=NO_CAMPAIGN,
    ),
    Route(
        "interval", "POST", "/interval/{queue_type}/{queue_id}/", "Change a queue's rate limit", "admin", success(),
        body=c.NewInterval, body_required=True,
    ),
    Route(
        "metrics", "GET", "/metrics/", "Queue types (holding jobs, or drained within idle_type_retention_ms) and"
        " overall per-minute counts; the Prometheus exposition when Accept prefers text/plain or"
        " application/openmetrics-text, or with ?format=prometheus", "read",
        success(queue_types=IDENTIFIERS, enqueue_counts=COUNTS, dequeue_counts=COUNTS),
        query=(Query("format", choices=("prometheus", "json")),),
        media=("application/json", "text/plain", "application/openmetrics-text"),
    ),
    Route(
        "type_metrics", "GET", "/metrics/{queue_type}/", "Queue ids holding queued or active jobs, in id order, a"
        " page at a time", "read", success(queue_ids=IDENTIFIERS, total=INTEGER),
        query=(Query("limit", 1, MAX_PAGE, 1000), *PAGE),
    ),
    Route(
        "queue_metrics", "GET", "/metrics/{queue_type}/{queue_id}/", "One queue's length and per-minute counts",
        "read", success(queue_length=INTEGER, enqueue_counts=COUNTS, dequeue_counts=COUNTS),
    ),
    Route(
        "delete_queue", "DELETE", "/deletequeue/{queue_type}/{queue_id}/", "Delete queued jobs (purge_all: active"
        " jobs too)", "admin", success(deleted=INTEGER), body=c.Purge,
    ),
    Route(
        "dead_letters", "GET", "/deadletter/{queue_type}/", "Dead-lettered jobs of a type, oldest first", "read",
        success(total=INTEGER, jobs=array(ref(c.DeadLetter))), query=(Query("limit", 1, 1000, 100), *PAGE),
    ),
    Route(
        "retry_dead_letter", "POST", "/deadletter/{queue_type}/{queue_id}/{job_id}/retry/",
        "Requeue a dead-lettered job (a new deadline only if the body gives one)", "admin", QUEUED, body=c.Retry,
        refusals={409: ("job_id is queued or active again", c.Error)},
    ),
    Route(
        "delete_dead_letter", "DELETE", "/deadletter/{queue_type}/{queue_id}/{job_id}/", "Delete a dead-lettered job",
        "admin", success(),
    ),
    Route(
        "set_limits", "PUT", "/limits/{queue_type}/{queue_id}/", "Set the queue's own limits (a value sets one, null"
        " clears it); they win over enqueues'", "admin", LIMITS, body=c.NewLimits, body_required=True,
    ),
    Route("limits", "GET", "/limits/{queue_type}/{queue_id}/", "The queue's effective limits and their sources",
          "read", LIMITS),
    Route("clear_limits", "DELETE", "/limits/{queue_type}/{queue_id}/", "Drop the queue's own limits", "admin", LIMITS),
    Route(
        "set_type_limits", "PUT", "/limits/{queue_type}/", "Set the type-wide limits, on top of each queue's (a value"
        " sets one, null clears it); split evenly over the type's shards", "admin", TYPE_LIMITS,
        body=c.NewTypeLimits, body_required=True,
    ),
    Route("type_limits", "GET", "/limits/{queue_type}/", "The type-wide limits and the slots they count", "read",
          TYPE_LIMITS),
    Route("clear_type_limits", "DELETE", "/limits/{queue_type}/", "Drop the type-wide limits", "admin", TYPE_LIMITS),
    Route(
        "set_type_settings", "PUT", "/types/{queue_type}/", "Spread the type over `shards` hash tags (409 while it"
        " holds jobs, dead letters, queue limits or pauses)", "admin", TYPE_SETTINGS, body=c.NewTypeSettings,
        body_required=True, refusals={409: ("the type holds live state, named in blocked_by", c.Blocked)},
    ),
    Route("type_settings", "GET", "/types/{queue_type}/", "The type's settings: its shard count", "read",
          TYPE_SETTINGS),
    Route("pause_type", "POST", "/pause/{queue_type}/", "Pause the whole type", "admin", PAUSED, body=c.PauseFor,
          defaults={"queue_id": None}),
    Route("pause", "POST", "/pause/{queue_type}/{queue_id}/", "Pause one queue", "admin", PAUSED, body=c.PauseFor),
    Route("resume_type", "POST", "/resume/{queue_type}/", "Resume the whole type", "admin", success(),
          body=c.NoFields, defaults={"queue_id": None}),
    Route("resume", "POST", "/resume/{queue_type}/{queue_id}/", "Resume one queue", "admin", success(),
          body=c.NoFields),
    Route(
        "queue_info", "GET", "/queue/{queue_type}/{queue_id}/", "One queue now: lengths, limits, pause, next ready,"
        " oldest job's age", "read", {"allOf": [success(), ref(c.QueueView)]},
    ),
    Route(
        "queues", "GET", "/queues/{queue_type}/", "A page of the type's queues in queue_id order", "read",
        success(total=INTEGER, queues=array(ref(c.QueueView))), query=(Query("limit", 1, 1000, 100), *PAGE),
    ),
    Route(
        "type_stats", "GET", "/stats/{queue_type}/", "One type's jobs and queues by state, counters since it began,"
        " per-minute counts, the last hour's rates", "read",
        success(jobs={"type": "object"}, queues={"type": "object"}, counters={"type": "object"},
                enqueue_counts=COUNTS, rates={"type": "object"}),
    ),
    Route(
        "autoscale", "GET", "/autoscale/{queue_type}/", "How many jobs of the type could usefully run at once now"
        " (what to scale workers to), and the inputs it came from", "read", {"allOf": [success(), ref(c.Autoscale)]},
    ),
    Route("dashboard", "GET", "/dashboard/", "The dashboard page", OPEN, TEXT, media=("text/html",),
          defaults={"asset": "index.html"}),
    Route("dashboard_asset", "GET", "/dashboard/{asset}", "The dashboard's scripts and styles", OPEN, TEXT,
          media=("text/javascript", "text/css"), refusals={404: ("no such asset", c.Error)}),
    Route(
        "deep_status", "GET", "/deepstatus/", "Redis answers and accepts writes; `parked`: long polls the answering"
        " worker process holds (on the token's types, when it is limited to some)", "read", success(parked=INTEGER),
        typeless=True,
    ),
    Route(
        "whoami", "GET", "/whoami/", "The token's role and queue types (null: every type); with auth off, admin",
        ANY_TOKEN, success(auth={"enum": ["off", "required"]}, role={"enum": list(ROLES)},
                           types={"anyOf": [IDENTIFIERS, {"type": "null"}]}), typeless=True,
    ),
    Route("livez", "GET", "/livez", "Liveness: the process serves (no token, nothing disclosed)", OPEN, success()),
    Route(
        "readyz", "GET", "/readyz", "Readiness: Redis answered a PING within socket_timeout (no token, nothing"
        " disclosed)", OPEN, success(), refusals={503: ("Redis did not answer within socket_timeout", c.Error)},
    ),
    Route("openapi", "GET", "/openapi.json", "This document (OpenAPI 3.1)", "read", {"type": "object"},
          typeless=True),
)  # fmt: skip
BY_ENDPOINT = {route.endpoint: route for route in ROUTES.values()}


def serves(*operation_ids: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated view for these routes of the table."""

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        for operation_id in operation_ids:
            route = ROUTES[operation_id]
            defaults = {"defaults": route.defaults} if route.defaults else {}
            api.add_url_rule(route.rule, operation_id, view, methods=[route.method], **defaults)
        return view

    return register
