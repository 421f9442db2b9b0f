"""Reference apps served by the same gunicorn + gevent settings as SharQ.

`empty` does nothing but answer: the ceiling every SharQ figure is divided by.
`ping` does one Redis PING per request: the floor one round trip puts on a call.
"""

from __future__ import annotations

import os

import redis
from flask import Flask

empty = Flask("empty")
ping = Flask("ping")
_redis = redis.Redis.from_url(os.environ.get("SHARQ_REDIS_URL", "redis://127.0.0.1:6379/0"))


@empty.get("/")
def empty_index() -> dict:
    return {"message": "Hello, SharQ!"}


@ping.get("/")
def ping_index() -> dict:
    _redis.ping()
    return {"message": "Hello, SharQ!"}
