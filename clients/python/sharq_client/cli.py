"""``sharq-worker module:function --url URL --type TYPE``: run a handler from the shell.

    sharq-worker tasks:send_sms --url http://127.0.0.1:8080 --type sms --concurrency 8

The handler receives a `sharq_client.Job`; returning finishes the job, raising
fails it (``raise Retry(after_ms=...)`` to retry it later). URL and token also
come from SHARQ_URL and SHARQ_TOKEN. SIGTERM or Ctrl-C stops taking jobs and
lets the running ones finish (a second one: at once; the jobs still running
are given back to their queues, so one whose handler still ends may run twice).
A server that refuses the token (401, 403) or the type (400), or a worker thread
that dies, ends it with exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from .client import Client
from .errors import SharqClientError
from .worker import Worker


def load_handler(spec: str) -> Callable[..., Any]:
    """``package.module:function`` as a callable."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"handler must be module:function, not {spec!r}")
    sys.path.insert(0, os.getcwd())  # as python -m does: handlers next to the caller
    handler = getattr(importlib.import_module(module_name), name)
    if not callable(handler):
        raise ValueError(f"{spec} is not callable")
    return handler


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sharq-worker", description="Run a handler on the jobs of one queue type.")
    parser.add_argument("handler", help="module:function called with each job")
    parser.add_argument("--url", default=os.environ.get("SHARQ_URL"), help="SharQ server (default $SHARQ_URL)")
    parser.add_argument("--token", default=os.environ.get("SHARQ_TOKEN"), help="bearer token (default $SHARQ_TOKEN)")
    parser.add_argument("--type", required=True, dest="queue_type", help="the queue type to work on")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs handled at once (default 1)")
    parser.add_argument(
        "--batch", type=int, help="most jobs taken per request (default: the concurrency, from 50 to 100)"
    )
    parser.add_argument("--grace", type=float, default=30.0, help="s running jobs get to finish on SIGTERM")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING... (default INFO)")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url (or SHARQ_URL) is required")
    if args.concurrency < 1 or (args.batch is not None and not 1 <= args.batch <= 100):
        parser.error("--concurrency must be >= 1 and --batch from 1 to 100")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
    )
    try:
        handler = load_handler(args.handler)
    except (ImportError, AttributeError, ValueError) as error:
        sys.exit(f"sharq-worker: cannot load {args.handler}: {error}")
    client = Client(args.url, args.token)
    logging.getLogger("sharq_client").info(
        "working on %s jobs from %s with %s (concurrency %d)", args.queue_type, args.url, args.handler, args.concurrency
    )
    worker = Worker(client, args.queue_type, handler, args.concurrency, args.batch, grace=args.grace)
    failed = None
    try:
        worker.run()
    except SharqClientError as error:
        failed = f"sharq-worker: SharQ refused this worker (HTTP {error.status}): {error.message}"
    except Exception as error:  # one of its threads died: it logged how
        failed = f"sharq-worker: stopped, a worker thread failed: {error!r}"
    if worker.left:  # handlers join() gave up on: their jobs were given back
        abandon(failed)
    sys.exit(failed)


def abandon(failed: str | None) -> None:
    """Exit now, not waiting for the handlers still running (Python waits for
    them at exit, however long they take)."""
    if failed:
        print(failed, file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
