"""The answers that hand jobs out, and what becomes of those jobs when the client is gone."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, request

from sharq_core import SharQ
from sharq_core.jobs import DequeuedJob

from .longpoll import client_alive

log = logging.getLogger(__name__)


def request_alive() -> bool:
    """Whether the current request's client is still connected."""
    return client_alive(request.environ.get("gunicorn.socket"))


def job_list(jobs: list[DequeuedJob]) -> bytes:
    """The jobs as a JSON array, their payloads as stored (unparsed)."""
    return b"[" + b",".join(b"{" + job.json_members() + b"}" for job in jobs) + b"]"


def deliver(engine: SharQ, queue_type: str, jobs: list[DequeuedJob], body: bytes, waited: int) -> Any:
    """The answer that hands out `jobs`. After a long poll (`waited`), should it
    not be written to the client (it went away meanwhile), the jobs go back to
    their queues at once rather than after job_expire_interval."""
    if not jobs or not waited:
        return current_app.response_class(body, mimetype="application/json")
    sock = request.environ.get("gunicorn.socket")

    def stream() -> Any:
        written = False
        try:
            if client_alive(sock):  # a client gone during the take gets nothing
                yield body
                written = True  # the server asks for more only once the body is out
        finally:
            if not written:
                log.warning("client gone before its %d job(s) were written: returned to their queues", len(jobs))
                engine.release(queue_type, jobs)

    response = current_app.response_class(stream(), mimetype="application/json")
    response.headers["Content-Length"] = str(len(body))
    return response
