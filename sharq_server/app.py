"""The Flask application: views that read their arguments, call the engine and return a dict.

What each route takes and answers is declared once in `routes.py`; the values are
checked by the engine (and in Lua where they must be atomic); failures are turned
into responses by `errors.py` alone.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import ujson
from flask import Flask, current_app, request, send_from_directory
from flask.json.provider import JSONProvider
from werkzeug.exceptions import MethodNotAllowed

from sharq_core import BadArgumentException, Config, NotFound, SharQ, load_config

from .arguments import json_body, queries, query, route
from .auth import install_auth, token_types, whoami
from .deliveries import deliver, job_list, request_alive
from .errors import failure, register_error_handlers
from .longpoll import LongPoll
from .openapi import document
from .probes import livez, readyz  # noqa: F401 - registers /livez and /readyz
from .prometheus import ACCEPTED as PROMETHEUS_TYPES
from .prometheus import count_requests, count_shortfalls, exposition, registry_for
from .routes import api, serves

DASHBOARD = os.path.join(os.path.dirname(__file__), "dashboard")
log = logging.getLogger(__name__)
CAMPAIGN_POLL_S = 0.25  # how often a ?wait= on a campaign reads it again
serves("whoami")(whoami)


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
    count_shortfalls(app.extensions["sharq"])
    register_error_handlers(app)
    install_auth(app, config.server.auth_tokens)
    app.register_blueprint(api)
    return app


def engine() -> SharQ:
    return current_app.extensions["sharq"]


@serves("index")
def index() -> dict:
    return {"message": "Hello, SharQ!"}


@serves("enqueue")
def enqueue(queue_type: str, queue_id: str) -> tuple[dict, int]:
    return engine().enqueue_fields(queue_type, queue_id, json_body()), 201


@serves("enqueue_many")
def enqueue_many(queue_type: str) -> tuple[dict, int]:
    return {"status": "success", "results": engine().enqueue_many(queue_type, json_body().get("jobs"))}, 200


@serves("dequeue_default", "dequeue")
def dequeue(queue_type: str) -> Any:
    """One job, or with ?count=N up to N; with ?wait=S the request waits up to S
    seconds for one. The payloads go out as stored, unparsed."""
    if request.method == "HEAD":  # Flask adds HEAD to GET routes; it must not take a job
        raise MethodNotAllowed(valid_methods=["GET"])
    count, wait = query("count"), query("wait")
    jobs, due = long_poll().take(queue_type, 1 if count is None else count, wait, request_alive)
    if not jobs:
        return nothing_ready(queue_type, due)
    members = jobs[0].json_members() if count is None else b'"jobs":' + job_list(jobs)
    return deliver(engine(), queue_type, jobs, b'{"status":"success",' + members + b"}", wait)


@serves("finish")
def finish(queue_type: str, queue_id: str, job_id: str) -> dict:
    body = json_body()
    return engine().finish_job(job_id, queue_id, queue_type, body.get("receipt"), body.get("cost"))


@serves("finish_many")
def finish_many(queue_type: str) -> Any:
    """Finish up to 100 jobs in one atomic call; with ?next=N (and ?wait=S) the
    same call hands out up to N jobs: one request per batch for a busy worker.
    Past the parked-poll cap, one with acks answers them (they are done); one
    without is a plain long poll, refused with 429 as /dequeue/ refuses it."""
    jobs = json_body().get("jobs")
    next_count, wait = query("next"), query("wait")  # checked before anything changes
    results, taken, due = engine().finish_many(queue_type, jobs, next_count)
    if next_count and not taken and wait:
        taken, due = long_poll().take(queue_type, next_count, wait, request_alive, refuse_when_full=not jobs)
    head = b'{"status":"success","results":' + ujson.dumps(results).encode()
    if not next_count:
        return current_app.response_class(head + b"}", mimetype="application/json")
    tail = b',"jobs":' + job_list(taken) + (b"}" if taken else b',"retry_after_ms":%s}' % ujson.dumps(due).encode())
    return deliver(engine(), queue_type, taken, head + tail, wait)


@serves("touch")
def touch(queue_type: str, queue_id: str, job_id: str) -> dict:
    return engine().touch(job_id, queue_id, queue_type, json_body().get("receipt"))


@serves("fail")
def fail(queue_type: str, queue_id: str, job_id: str) -> dict:
    return engine().fail(queue_type, queue_id, job_id, **json_body())


def nothing_ready(queue_type: str, due: int | None) -> tuple[dict, int]:
    """The 404 of a dequeue that found nothing, saying when to ask again or, when
    nothing will come until someone resumes it, that the type is paused."""
    if due is None and engine().type_paused_until(queue_type) == -1:
        return failure(404, "queue type is paused until resumed", retry_after_ms=None, paused=True)
    return failure(404, "no job is ready", retry_after_ms=due)


def long_poll() -> LongPoll:
    return current_app.extensions["sharq_longpoll"]


@serves("job_status")
def job_status(queue_type: str, queue_id: str, job_id: str) -> dict:
    result = engine().job_status(queue_type, queue_id, job_id)
    if result["state"] == "unknown":
        raise NotFound("job is not queued, active or dead in this queue")
    return result


@serves("campaigns")
def campaigns(queue_type: str) -> dict:
    return engine().campaigns(queue_type, **queries())


@serves("campaign")
def campaign(queue_type: str, campaign: str) -> dict:
    """The counts; with ?wait=S, answered once it is done or S seconds passed
    (read again every CAMPAIGN_POLL_S: a campaign ends once, no announcement needed)."""
    wait = query("wait")
    found = engine().campaign(queue_type, campaign)
    deadline = time.monotonic() + wait
    while not found["done"] and time.monotonic() < deadline and request_alive():
        time.sleep(min(CAMPAIGN_POLL_S, max(deadline - time.monotonic(), 0)))
        found = engine().campaign(queue_type, campaign)
    return found


@serves("on_done")
def on_done(queue_type: str, campaign: str) -> dict:
    return engine().set_on_done(queue_type, campaign, json_body().get("on_done"))


@serves("cancel_campaign")
def cancel_campaign(queue_type: str, campaign: str) -> dict:
    return engine().cancel_campaign(queue_type, campaign)


@serves("interval")
def interval(queue_type: str, queue_id: str) -> dict:
    return engine().set_interval(json_body().get("interval"), queue_id, queue_type)


@serves("metrics", "type_metrics", "queue_metrics")
def metrics(queue_type: str | None = None, queue_id: str | None = None) -> Any:
    """The seed's JSON; the overall view in Prometheus' format when the scrape asks
    for it. The per-type view pages its queue ids: ?limit= (default 1000) &offset=."""
    if queue_type is None and _wants_prometheus():
        body, content_type = exposition(current_app.extensions["sharq_prometheus"], request.headers.get("Accept", ""))
        return current_app.response_class(body, content_type=content_type)
    return engine().metrics(queue_type, queue_id, **queries())


def _wants_prometheus() -> bool:
    """?format=prometheus, or an Accept header that rates a Prometheus format above
    JSON (a scrape's types carry a version parameter, which plain matching misses)."""
    given, choices = request.args.get("format"), route().argument("format").choices
    if given is not None and given not in choices:
        raise BadArgumentException(f"format must be {' or '.join(choices)}")
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


@serves("delete_queue")
def delete_queue(queue_type: str, queue_id: str) -> dict:
    return engine().delete_queue(queue_type, queue_id, json_body().get("purge_all", False))


@serves("dead_letters")
def dead_letters(queue_type: str) -> dict:
    return engine().dead_letters(queue_type, **queries())


@serves("retry_dead_letter")
def retry_dead_letter(queue_type: str, queue_id: str, job_id: str) -> dict:
    return engine().retry_dead_letter(queue_type, queue_id, job_id, **json_body())


@serves("delete_dead_letter")
def delete_dead_letter(queue_type: str, queue_id: str, job_id: str) -> dict:
    return engine().delete_dead_letter(queue_type, queue_id, job_id)


@serves("set_limits")
def set_limits(queue_type: str, queue_id: str) -> dict:
    """Any of interval, burst, max_active: a value sets it, null clears it."""
    return engine().set_limits(queue_type, queue_id, **json_body())


@serves("limits")
def limits(queue_type: str, queue_id: str) -> dict:
    return engine().limits(queue_type, queue_id)


@serves("clear_limits")
def clear_limits(queue_type: str, queue_id: str) -> dict:
    return engine().clear_limits(queue_type, queue_id)


@serves("set_type_limits")
def set_type_limits(queue_type: str) -> dict:
    """Any of interval, burst, max_active for the type as a whole."""
    return engine().set_type_limits(queue_type, **json_body())


@serves("type_limits")
def type_limits(queue_type: str) -> dict:
    return engine().type_limits(queue_type)


@serves("clear_type_limits")
def clear_type_limits(queue_type: str) -> dict:
    return engine().clear_type_limits(queue_type)


@serves("set_type_settings")
def set_type_settings(queue_type: str) -> dict:
    return engine().set_type_settings(queue_type, json_body().get("shards"))


@serves("type_settings")
def type_settings(queue_type: str) -> dict:
    return engine().type_settings(queue_type)


@serves("pause_type", "pause")
def pause(queue_type: str, queue_id: str | None) -> dict:
    return engine().pause(queue_type, queue_id, json_body().get("for_ms"))


@serves("resume_type", "resume")
def resume(queue_type: str, queue_id: str | None) -> dict:
    json_body()
    return engine().resume(queue_type, queue_id)


@serves("queue_info")
def queue_info(queue_type: str, queue_id: str) -> dict:
    return engine().queue_info(queue_type, queue_id)


@serves("queues")
def queues(queue_type: str) -> dict:
    """A page of the type's queues in queue_id order: ?limit= (default 100) &offset=."""
    return engine().queues(queue_type, **queries())


@serves("type_stats")
def type_stats(queue_type: str) -> dict:
    """One type's figures (as Prometheus gets them), its per-minute counts and its
    last hour of rates (the dashboard's charts)."""
    sq = engine()
    return {
        "status": "success", **sq.type_stats(queue_type), **sq.minute_counts(queue_type),
        "rates": sq.rates(queue_type),
    }  # fmt: skip


@serves("autoscale")
def autoscale(queue_type: str) -> dict:
    return engine().autoscale(queue_type)


@serves("dashboard", "dashboard_asset")
def dashboard(asset: str) -> Any:
    """The dashboard's page and its assets, packaged with the server (no CDN). The
    page says whether the API wants a token, so it asks for one before any call."""
    if asset != "index.html":
        return send_from_directory(DASHBOARD, asset, max_age=60)
    with open(os.path.join(DASHBOARD, "index.html"), encoding="utf-8") as page:
        auth = "required" if current_app.config.get("SHARQ_AUTH") else "off"
        return current_app.response_class(page.read().replace("{{auth}}", auth), mimetype="text/html")


@serves("deep_status")
def deep_status() -> dict:
    """Redis answers and accepts writes; also how many long polls this worker
    process holds parked (on its own types, for a token limited to some)."""
    return {**engine().deep_status(), "parked": long_poll().parked_on(token_types())}


@serves("openapi")
def openapi() -> dict:
    return document()
