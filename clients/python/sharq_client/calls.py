"""Each SharQ call as data: the request it makes and how its answer reads.

Free of I/O, so a client over any HTTP library (`AsyncClient` over httpx) sends
the same requests as `Client` and answers alike: it sends `call.method` to
`call.path` with `call.body` and `call.query`, gives it `call.wait` seconds on
top of its timeout, and returns `call.answer(status, body_bytes)`.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .errors import BadRequest, Conflict, NotFound, StaleReceipt, Unavailable, error_for
from .jobs import Batch, Job


def _nothing(data: dict[str, Any]) -> None:
    """The answer of a call that returns nothing."""


@dataclass(frozen=True)
class Call:
    """One request; `read` turns its JSON answer into the method's result, with
    `none_found` a 404 answers [] (a dequeue that found no job), and a 409 that is
    not a duplicate raises `conflict` (StaleReceipt for the calls that carry one)."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    query: dict[str, Any] | None = None
    wait: float = 0
    read: Callable[[dict[str, Any]], Any] = _nothing
    none_found: bool = False
    conflict: type[Conflict] = Conflict

    def target(self) -> str:
        """The path with its query string."""
        return self.path + ("?" + urlencode(self.query) if self.query else "")

    def content(self) -> bytes | None:
        """The JSON request body."""
        return None if self.body is None else json.dumps(self.body).encode()

    def answer(self, status: int, raw: bytes) -> Any:
        """The method's result for one HTTP answer, or the exception its failure maps to."""
        try:
            return self.read(decode(status, raw, self.path, self.conflict))
        except NotFound:
            if self.none_found:
                return []
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as error:  # JSON without SharQ's members
            raise not_sharqs(status, raw, self.path) from error


# Failures any server in between may answer about the request itself (a proxy's
# auth, its body size limit): their class holds whoever said it.
_ANYONE_MAY_SAY = (400, 401, 403, 413)


def decode(status: int, raw: bytes, path: str, conflict: type[Conflict] = Conflict) -> dict[str, Any]:
    """The JSON object of a success answer; raises the error class of a failure,
    and Unavailable for an answer that is not SharQ's (a redirect, a page, a
    proxy's 404 that must not read as "no job is ready")."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if status >= 400:
        sharqs = isinstance(data, dict) and data.get("status") == "failure"
        if not (sharqs or status in _ANYONE_MAY_SAY):
            raise not_sharqs(status, raw, path)
        raise error_for(status, data if sharqs else {"message": raw[:200].decode(errors="replace")}, conflict)
    if not 200 <= status < 300 or not isinstance(data, dict):
        raise not_sharqs(status, raw, path)
    return data


def not_sharqs(status: int, raw: bytes, path: str) -> Unavailable:
    """An answer SharQ never gives (a proxy's redirect or login page, JSON without
    the members the call answers): as if the server were away, since a retry
    once it answers again is safe and nothing can be read from this one."""
    text = raw[:100].decode(errors="replace")
    return Unavailable(f"{path} answered HTTP {status} {text!r}, not a SharQ answer (a proxy in between?)", status)


def headers(token: str | None) -> dict[str, str]:
    """The headers of every request: JSON, and the bearer token when there is one."""
    return {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})


def given(**fields: Any) -> dict[str, Any]:
    """The fields that were given (not None)."""
    return {name: value for name, value in fields.items() if value is not None}


def _field(name: str) -> Callable[[dict[str, Any]], Any]:
    """A reader returning one member of the answer."""
    return lambda data: data[name]


def _jobs(queue_type: str) -> Callable[[dict[str, Any]], list[Job]]:
    return lambda data: [Job.from_json(queue_type, job) for job in data["jobs"]]


def _batch(queue_type: str, take: int) -> Callable[[dict[str, Any]], Batch]:
    """An ack-and-take's answer; `jobs` only when it took."""
    return lambda data: Batch(_results(data), _jobs(queue_type)(data) if take else [], data.get("retry_after_ms"))


def _results(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One result per ack, each naming its job and how it went."""
    results = data["results"]
    if not all(isinstance(result, dict) and result.keys() >= _RESULT for result in results):
        raise KeyError("results")
    return results


_RESULT = {"queue_id", "job_id", "status"}


def _whole(data: dict[str, Any]) -> dict[str, Any]:
    return data


_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,100}\Z")
_DONE_JOB = re.compile(r"campaign-done\.[A-Za-z0-9_-]{1,100}\Z")  # the job a campaign enqueues when done


def _checked(build: Callable[..., Call]) -> Callable[..., Call]:
    """The call, its queue_type, queue_id and job_id checked first: they go into
    the path, where "a#b", "a?b" or "a/b" would name another queue (a delete of
    "acme#typo" would empty "acme"). BadRequest, as the server answers them."""
    signature = inspect.signature(build)
    names = [name for name in ("queue_type", "queue_id", "job_id", "campaign") if name in signature.parameters]

    @functools.wraps(build)
    def call(*args: Any, **kwargs: Any) -> Call:
        given_args = signature.bind(*args, **kwargs).arguments
        for name in names:
            value = given_args.get(name, signature.parameters[name].default)
            if name == "job_id" and isinstance(value, str) and _DONE_JOB.match(value):
                continue
            if value is not None and not (isinstance(value, str) and _IDENTIFIER.match(value)):
                raise BadRequest(f"{name} must be 1-100 characters of A-Z a-z 0-9 _ -")
        return build(*args, **kwargs)

    return call


def _queue_path(kind: str, queue_type: str, queue_id: str | None = None) -> str:
    """/kind/type/ or /kind/type/id/."""
    return f"/{kind}/{queue_type}/" + (f"{queue_id}/" if queue_id else "")


# -- producers ---------------------------------------------------------------------------


@_checked
def enqueue(
    queue_type: str,
    queue_id: str,
    job_id: str,
    payload: Any,
    interval: int,
    requeue_limit: int | None = None,
    max_queued_length: int | None = None,
    delay_ms: int | None = None,
    not_before: int | None = None,
    expire_at: int | None = None,
    ttl_ms: int | None = None,
    campaign: str | None = None,
    cost: int | None = None,
    priority: int | None = None,
) -> Call:
    body = {"job_id": job_id, "payload": payload, "interval": interval}
    body |= given(
        requeue_limit=requeue_limit, max_queued_length=max_queued_length, delay_ms=delay_ms, not_before=not_before,
        expire_at=expire_at, ttl_ms=ttl_ms, campaign=campaign, cost=cost, priority=priority,
    )  # fmt: skip
    return Call("POST", f"/enqueue/{queue_type}/{queue_id}/", body, read=_field("status"))


@_checked
def enqueue_many(queue_type: str, jobs: list[dict[str, Any]]) -> Call:
    return Call("POST", f"/enqueue/{queue_type}/", {"jobs": jobs}, read=_field("results"))


# -- workers -----------------------------------------------------------------------------


@_checked
def dequeue(queue_type: str = "default", count: int = 1, wait: int = 0) -> Call:
    query = {"count": count, "wait": wait}
    return Call("GET", f"/dequeue/{queue_type}/", query=query, wait=wait, read=_jobs(queue_type), none_found=True)


@_checked
def finish(queue_type: str, queue_id: str, job_id: str, receipt: str | None = None, cost: int | None = None) -> Call:
    path = f"/finish/{queue_type}/{queue_id}/{job_id}/"
    return Call("POST", path, given(receipt=receipt, cost=cost), conflict=StaleReceipt)


@_checked
def finish_many(queue_type: str, jobs: list[Job | dict[str, Any]], take: int = 0, wait: int = 0) -> Call:
    acks = [job.ack() if isinstance(job, Job) else job for job in jobs]
    query = {"next": take, "wait": wait} if take else None
    return Call("POST", f"/finish/{queue_type}/", {"jobs": acks}, query, wait, _batch(queue_type, take))


@_checked
def touch(queue_type: str, queue_id: str, job_id: str, receipt: str | None = None) -> Call:
    path = f"/touch/{queue_type}/{queue_id}/{job_id}/"
    return Call("POST", path, given(receipt=receipt), read=_field("expires_at"), conflict=StaleReceipt)


@_checked
def fail(
    queue_type: str,
    queue_id: str,
    job_id: str,
    receipt: str | None = None,
    error: str | None = None,
    retry_after_ms: int | None = None,
    dead: bool = False,
    throttle: bool = False,
    release: bool = False,
    cost: int | None = None,
) -> Call:
    body = given(receipt=receipt, error=error, retry_after_ms=retry_after_ms, cost=cost)
    body |= ({"dead": True} if dead else {}) | ({"throttle": True} if throttle else {})
    body |= {"release": True} if release else {}
    path = f"/fail/{queue_type}/{queue_id}/{job_id}/"
    return Call("POST", path, body, read=_field("state"), conflict=StaleReceipt)


# -- administration and views ------------------------------------------------------------


@_checked
def job_status(queue_type: str, queue_id: str, job_id: str) -> Call:
    return Call("GET", f"/job/{queue_type}/{queue_id}/{job_id}/", read=_whole)


@_checked
def interval(queue_type: str, queue_id: str, interval: int) -> Call:
    return Call("POST", f"/interval/{queue_type}/{queue_id}/", {"interval": interval})


@_checked
def metrics(queue_type: str | None = None, queue_id: str | None = None, **page: int) -> Call:
    path = "/metrics/" + "".join(f"{part}/" for part in (queue_type, queue_id) if part)
    return Call("GET", path, query=page or None, read=_whole)


@_checked
def delete_queue(queue_type: str, queue_id: str, purge_all: bool = False) -> Call:
    path = f"/deletequeue/{queue_type}/{queue_id}/"
    return Call("DELETE", path, {"purge_all": purge_all}, read=_field("deleted"))


@_checked
def dead_letters(queue_type: str, limit: int = 100, offset: int = 0) -> Call:
    return Call("GET", f"/deadletter/{queue_type}/", query={"limit": limit, "offset": offset}, read=_whole)


@_checked
def retry_dead_letter(
    queue_type: str, queue_id: str, job_id: str, expire_at: int | None = None, ttl_ms: int | None = None
) -> Call:
    body = given(expire_at=expire_at, ttl_ms=ttl_ms) or None
    return Call("POST", f"/deadletter/{queue_type}/{queue_id}/{job_id}/retry/", body)


@_checked
def delete_dead_letter(queue_type: str, queue_id: str, job_id: str) -> Call:
    return Call("DELETE", f"/deadletter/{queue_type}/{queue_id}/{job_id}/")


@_checked
def set_limits(queue_type: str, queue_id: str, **limits: int | None) -> Call:
    return Call("PUT", _queue_path("limits", queue_type, queue_id), limits, read=_field("limits"))


@_checked
def limits(queue_type: str, queue_id: str) -> Call:
    return Call("GET", _queue_path("limits", queue_type, queue_id), read=_field("limits"))


@_checked
def clear_limits(queue_type: str, queue_id: str) -> Call:
    return Call("DELETE", _queue_path("limits", queue_type, queue_id))


@_checked
def set_type_limits(queue_type: str, **limits: int | None) -> Call:
    return Call("PUT", f"/limits/{queue_type}/", limits, read=_whole)


@_checked
def type_limits(queue_type: str) -> Call:
    return Call("GET", f"/limits/{queue_type}/", read=_whole)


@_checked
def clear_type_limits(queue_type: str) -> Call:
    return Call("DELETE", f"/limits/{queue_type}/", read=_whole)


@_checked
def set_type_settings(queue_type: str, shards: int) -> Call:
    return Call("PUT", f"/types/{queue_type}/", {"shards": shards}, read=_whole)


@_checked
def type_settings(queue_type: str) -> Call:
    return Call("GET", f"/types/{queue_type}/", read=_whole)


@_checked
def pause(queue_type: str, queue_id: str | None = None, for_ms: int | None = None) -> Call:
    return Call("POST", _queue_path("pause", queue_type, queue_id), given(for_ms=for_ms), read=_field("paused_until"))


@_checked
def resume(queue_type: str, queue_id: str | None = None) -> Call:
    return Call("POST", _queue_path("resume", queue_type, queue_id))


@_checked
def queue_info(queue_type: str, queue_id: str) -> Call:
    return Call("GET", _queue_path("queue", queue_type, queue_id), read=_whole)


@_checked
def type_stats(queue_type: str) -> Call:
    return Call("GET", f"/stats/{queue_type}/", read=_whole)


@_checked
def autoscale(queue_type: str) -> Call:
    return Call("GET", f"/autoscale/{queue_type}/", read=_whole)


@_checked
def queues(queue_type: str, limit: int = 100, offset: int = 0) -> Call:
    return Call("GET", f"/queues/{queue_type}/", query={"limit": limit, "offset": offset}, read=_whole)


# -- campaigns ---------------------------------------------------------------------------


@_checked
def campaign(queue_type: str, campaign: str, wait: int = 0) -> Call:
    path = f"/campaigns/{queue_type}/{campaign}/"
    return Call("GET", path, query={"wait": wait} if wait else None, wait=wait, read=_whole)


@_checked
def campaigns(queue_type: str, limit: int = 100, offset: int = 0) -> Call:
    return Call("GET", f"/campaigns/{queue_type}/", query={"limit": limit, "offset": offset}, read=_whole)


@_checked
def cancel_campaign(queue_type: str, campaign: str) -> Call:
    return Call("DELETE", f"/campaigns/{queue_type}/{campaign}/", read=_whole)


@_checked
def on_done(queue_type: str, campaign: str, target_type: str, target_queue: str, payload: Any = None) -> Call:
    body = {"on_done": {"queue_type": target_type, "queue_id": target_queue, "payload": payload}}
    return Call("PUT", f"/campaigns/{queue_type}/{campaign}/", body, read=_whole)


def deep_status() -> Call:
    return Call("GET", "/deepstatus/", read=_whole)
