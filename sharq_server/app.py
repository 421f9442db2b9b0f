"""The Flask application: routes that validate, call the engine and return a dict.

Rules live in the engine (and in Lua where they must be atomic); failures are
turned into responses by `errors.py` alone.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection
from typing import Any

import ujson
from flask import Blueprint, Flask, current_app, request, send_from_directory
from flask.json.provider import JSONProvider
from werkzeug.exceptions import MethodNotAllowed, RequestEntityTooLarge

from sharq_core import BadArgumentException, Config, NotFound, SharQ, load_config
from sharq_core import validation as check
from sharq_core.engine import MAX_BATCH
from sharq_core.jobs import DequeuedJob
from sharq_core.validation import known_fields

from .auth import install_auth
from .errors import failure, register_error_handlers
from .longpoll import MAX_WAIT_S, LongPoll, client_alive
from .openapi import document
from .prometheus import ACCEPTED as PROMETHEUS_TYPES
from .prometheus import count_requests, exposition, registry_for

api = Blueprint("sharq", __name__)
DASHBOARD = os.path.join(os.path.dirname(__file__), "dashboard")
log = logging.getLogger(__name__)

_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}\Z")  # ASCII digits only: str.isdigit() takes "²"


class UJSONProvider(JSONProvider):
    """Flask's JSON through ujson: faster, and NaN never leaves the server."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return ujson.loads(s)


def create_app(config: Config | None = None, engine: SharQ | None = None) -> Flask:
    """Build the app; the engine is created here unless one is passed in."""
    config = config or load_config()
    app = Flask(__name__)
    app.json = UJSONProvider(app)
    app.url_map.strict_slashes = False  # /dequeue and /dequeue/ both answer, no redirect
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_size
    app.extensions["sharq"] = engine or SharQ(config)
    connections = config.server.worker_connections
    app.extensions["sharq_longpoll"] = LongPoll(app.extensions["sharq"], max_parked=connections - connections // 10)
    app.extensions["sharq_prometheus"] = registry_for(app.extensions["sharq"])
    count_requests(app)
    register_error_handlers(app)
    install_auth(app, config.server.auth_tokens)
    app.register_blueprint(api)
    return app


def engine() -> SharQ:
    return current_app.extensions["sharq"]


def json_body(required: bool = True, fields: Collection[str] | None = None) -> dict[str, Any]:
    """The request body as a JSON object, whatever its Content-Type says; with
    `fields`, a field not among them is refused."""
    raw = _raw_body()
    if not raw and not required:
        return {}
    try:
        body = ujson.loads(raw)
    except ValueError:
        raise BadArgumentException("request body must be valid JSON (UTF-8)") from None
    if not isinstance(body, dict):
        raise BadArgumentException("request body must be a JSON object")
    if fields is not None:
        known_fields(body, fields)
    return body


def _raw_body() -> bytes:
    """The body bytes, read straight from the WSGI input, 413 past max_body_size.

    That skips werkzeug's stream wrappers, a measurable share of an enqueue's CPU.
    A chunked body carries no length: it is read up to one byte past the limit,
    so a longer one is refused whole rather than cut at the limit.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    stream = request.environ["wsgi.input"]
    if length is not None:
        return stream.read(length)
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise _too_large(limit)
    return b"".join(chunks)


def _too_large(limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(
        f"request body is larger than {limit} bytes; raise [sharq-server] max_body_size"
        " (SHARQ_MAX_BODY_SIZE) to accept more"
    )


def query_int(name: str, default: int | None) -> int | None:
    """A whole-number query parameter; given twice it is refused, not half-read."""
    given = request.args.getlist(name)
    if not given:
        return default
    if len(given) > 1:
        raise BadArgumentException(f"{name} is given more than once")
    raw = given[0]
    if not _WHOLE_NUMBER.match(raw):
        raise BadArgumentException(f"{name} must be a whole number of at most 9 digits")
    return int(raw)


@api.get("/")
def index() -> dict:
    return {"message": "Hello, SharQ!"}


@api.post("/enqueue/<queue_type>/<queue_id>/")
def enqueue(queue_type: str, queue_id: str) -> tuple[dict, int]:
    return engine().enqueue_fields(queue_type, queue_id, json_body()), 201


@api.post("/enqueue/<queue_type>/")
def enqueue_many(queue_type: str) -> tuple[dict, int]:
    results = engine().enqueue_many(queue_type, json_body(fields=("jobs",)).get("jobs"))
    return {"status": "success", "results": results}, 200


@api.get("/dequeue/", defaults={"queue_type": "default"})
@api.get("/dequeue/<queue_type>/")
def dequeue(queue_type: str) -> Any:
    """One job, or with ?count=N up to N; with ?wait=S the request waits up to S
    seconds for one. The payloads go out as stored, unparsed."""
    if request.method == "HEAD":  # Flask adds HEAD to GET routes; it must not take a job
        raise MethodNotAllowed(valid_methods=["GET"])
    count, wait = batch_arg("count", None, 1), wait_arg()
    jobs, due = long_poll().take(queue_type, 1 if count is None else count, wait, _client_alive)
    if not jobs:
        return nothing_ready(queue_type, due)
    if count is None:
        return _deliver(queue_type, jobs, b'{"status":"success",' + jobs[0].json_members() + b"}", wait)
    return _deliver(queue_type, jobs, b'{"status":"success","jobs":' + _job_list(jobs) + b"}", wait)


@api.post("/finish/<queue_type>/<queue_id>/<job_id>/")
def finish(queue_type: str, queue_id: str, job_id: str) -> dict:
    receipt = json_body(required=False, fields=("receipt",)).get("receipt")
    return engine().finish_job(job_id, queue_id, queue_type, receipt)


@api.post("/finish/<queue_type>/")
def finish_many(queue_type: str) -> Any:
    """Finish up to 100 jobs in one atomic call; with ?next=N (and ?wait=S) the
    same call hands out up to N jobs: one request per batch for a busy worker."""
    jobs = json_body(fields=("jobs",)).get("jobs")
    next_count, wait = batch_arg("next", 0, 0), wait_arg()  # checked before anything changes
    results, taken, due = engine().finish_many(queue_type, jobs, next_count)
    if next_count and not taken and wait:  # the acks are done: never refused from here on
        taken, due = long_poll().take(queue_type, next_count, wait, _client_alive, refuse_when_full=False)
    head = b'{"status":"success","results":' + ujson.dumps(results).encode()
    if not next_count:
        return current_app.response_class(head + b"}", mimetype="application/json")
    tail = b',"jobs":' + _job_list(taken) + (b"}" if taken else b',"retry_after_ms":%s}' % ujson.dumps(due).encode())
    return _deliver(queue_type, taken, head + tail, wait)


@api.post("/touch/<queue_type>/<queue_id>/<job_id>/")
def touch(queue_type: str, queue_id: str, job_id: str) -> dict:
    receipt = json_body(required=False, fields=("receipt",)).get("receipt")
    return engine().touch(job_id, queue_id, queue_type, receipt)


@api.post("/fail/<queue_type>/<queue_id>/<job_id>/")
def fail(queue_type: str, queue_id: str, job_id: str) -> dict:
    body = json_body(required=False, fields=FAIL_FIELDS)
    return engine().fail(queue_type, queue_id, job_id, **body)


FAIL_FIELDS = ("receipt", "error", "retry_after_ms", "dead", "throttle")
LIMIT_FIELDS = ("interval", "burst", "max_active")


def batch_arg(name: str, default: int | None, minimum: int) -> int | None:
    """?count= or ?next=: how many jobs to hand out, checked before any change."""
    value = query_int(name, default)
    return None if value is None else check.integer(name, value, minimum, MAX_BATCH)


def wait_arg() -> int:
    """?wait=S: how long a request may park, checked before any change."""
    return check.integer("wait", query_int("wait", 0), 0, MAX_WAIT_S)


def nothing_ready(queue_type: str, due: int | None) -> tuple[dict, int]:
    """The 404 of a dequeue that found nothing, saying when to ask again or, when
    nothing will come until someone resumes it, that the type is paused."""
    if due is None and engine().type_paused_until(queue_type) == -1:
        return failure(404, "queue type is paused until resumed", retry_after_ms=None, paused=True)
    return failure(404, "no job is ready", retry_after_ms=due)


def long_poll() -> LongPoll:
    return current_app.extensions["sharq_longpoll"]


def _client_alive() -> bool:
    return client_alive(request.environ.get("gunicorn.socket"))


def _job_list(jobs: list[DequeuedJob]) -> bytes:
    return b"[" + b",".join(b"{" + job.json_members() + b"}" for job in jobs) + b"]"


def _deliver(queue_type: str, jobs: list[DequeuedJob], body: bytes, waited: int) -> Any:
    """The answer that hands out `jobs`. After a long poll (`waited`), should it
    not be written to the client (it went away meanwhile), the jobs go back to
    their queues at once rather than after job_expire_interval."""
    if not jobs or not waited:
        return current_app.response_class(body, mimetype="application/json")
    sq, sock = engine(), request.environ.get("gunicorn.socket")

    def stream() -> Any:
        written = False
        try:
            if client_alive(sock):  # a client gone during the take gets nothing
                yield body
                written = True  # the server asks for more only once the body is out
        finally:
            if not written:
                log.warning("client gone before its %d job(s) were written: returned to their queues", len(jobs))
                sq.release(queue_type, jobs)

    response = current_app.response_class(stream(), mimetype="application/json")
    response.headers["Content-Length"] = str(len(body))
    return response


@api.get("/job/<queue_type>/<queue_id>/<job_id>/")
def job_status(queue_type: str, queue_id: str, job_id: str) -> dict:
    result = engine().job_status(queue_type, queue_id, job_id)
    if result["state"] == "unknown":
        raise NotFound("job is not queued, active or dead in this queue")
    return result


@api.post("/interval/<queue_type>/<queue_id>/")
def interval(queue_type: str, queue_id: str) -> dict:
    return engine().set_interval(json_body(fields=("interval",)).get("interval"), queue_id, queue_type)


@api.get("/metrics/")
@api.get("/metrics/<queue_type>/")
@api.get("/metrics/<queue_type>/<queue_id>/")
def metrics(queue_type: str | None = None, queue_id: str | None = None) -> Any:
    """The seed's JSON; the overall view in Prometheus' format when the scrape asks
    for it. The per-type view pages its queue ids: ?limit= (default 1000) &offset=."""
    if queue_type is None and _wants_prometheus():
        body, content_type = exposition(current_app.extensions["sharq_prometheus"], request.headers.get("Accept", ""))
        return current_app.response_class(body, content_type=content_type)
    return engine().metrics(queue_type, queue_id, query_int("limit", 1000), query_int("offset", 0))


def _wants_prometheus() -> bool:
    """?format=prometheus, or an Accept header that rates a Prometheus format above
    JSON (a scrape's types carry a version parameter, which plain matching misses)."""
    given = request.args.get("format")
    if given is not None and given not in ("prometheus", "json"):
        raise BadArgumentException("format must be prometheus or json")
    if given is not None:
        return given == "prometheus"
    prometheus = json = 0.0
    for value, quality in request.accept_mimetypes:
        mimetype = value.split(";", 1)[0].strip().lower()
        if mimetype in PROMETHEUS_TYPES:
            prometheus = max(prometheus, quality)
        elif mimetype in ("application/json", "application/*", "*/*"):
            json = max(json, quality)
    return prometheus > json


@api.delete("/deletequeue/<queue_type>/<queue_id>/")
def delete_queue(queue_type: str, queue_id: str) -> dict:
    purge_all = json_body(required=False, fields=("purge_all",)).get("purge_all", False)
    return engine().delete_queue(queue_type, queue_id, purge_all)


@api.get("/deadletter/<queue_type>/")
def dead_letters(queue_type: str) -> dict:
    return engine().dead_letters(queue_type, query_int("limit", 100), query_int("offset", 0))


@api.post("/deadletter/<queue_type>/<queue_id>/<job_id>/retry/")
def retry_dead_letter(queue_type: str, queue_id: str, job_id: str) -> dict:
    return engine().retry_dead_letter(queue_type, queue_id, job_id)


@api.delete("/deadletter/<queue_type>/<queue_id>/<job_id>/")
def delete_dead_letter(queue_type: str, queue_id: str, job_id: str) -> dict:
    return engine().delete_dead_letter(queue_type, queue_id, job_id)


@api.put("/limits/<queue_type>/<queue_id>/")
def set_limits(queue_type: str, queue_id: str) -> dict:
    """Any of interval, burst, max_active: a value sets it, null clears it."""
    return engine().set_limits(queue_type, queue_id, **json_body(fields=LIMIT_FIELDS))


@api.get("/limits/<queue_type>/<queue_id>/")
def limits(queue_type: str, queue_id: str) -> dict:
    return engine().limits(queue_type, queue_id)


@api.delete("/limits/<queue_type>/<queue_id>/")
def clear_limits(queue_type: str, queue_id: str) -> dict:
    return engine().clear_limits(queue_type, queue_id)


@api.post("/pause/<queue_type>/", defaults={"queue_id": None})
@api.post("/pause/<queue_type>/<queue_id>/")
def pause(queue_type: str, queue_id: str | None) -> dict:
    return engine().pause(queue_type, queue_id, json_body(required=False, fields=("for_ms",)).get("for_ms"))


@api.post("/resume/<queue_type>/", defaults={"queue_id": None})
@api.post("/resume/<queue_type>/<queue_id>/")
def resume(queue_type: str, queue_id: str | None) -> dict:
    json_body(required=False, fields=())
    return engine().resume(queue_type, queue_id)


@api.get("/queue/<queue_type>/<queue_id>/")
def queue_info(queue_type: str, queue_id: str) -> dict:
    return engine().queue_info(queue_type, queue_id)


@api.get("/queues/<queue_type>/")
def queues(queue_type: str) -> dict:
    """A page of the type's queues in queue_id order: ?limit= (default 100) &offset=."""
    return engine().queues(queue_type, query_int("limit", 100), query_int("offset", 0))


@api.get("/stats/<queue_type>/")
def type_stats(queue_type: str) -> dict:
    """One type's figures (as Prometheus gets them) and its per-minute counts."""
    sq = engine()
    return {"status": "success", **sq.type_stats(queue_type), **sq.minute_counts(queue_type)}


@api.get("/dashboard/", defaults={"asset": "index.html"})
@api.get("/dashboard/<asset>")
def dashboard(asset: str) -> Any:
    """The dashboard's page and its assets, packaged with the server (no CDN). The
    page says whether the API wants a token, so it asks for one before any call."""
    if asset != "index.html":
        return send_from_directory(DASHBOARD, asset, max_age=60)
    with open(os.path.join(DASHBOARD, "index.html"), encoding="utf-8") as page:
        auth = "required" if current_app.config.get("SHARQ_AUTH") else "off"
        return current_app.response_class(page.read().replace("{{auth}}", auth), mimetype="text/html")


@api.get("/deepstatus/")
def deep_status() -> dict:
    """Redis answers and accepts writes; also how many long polls this worker
    process holds parked."""
    return {**engine().deep_status(), "parked": long_poll().parked}


@api.get("/openapi.json")
def openapi() -> dict:
    return document()
