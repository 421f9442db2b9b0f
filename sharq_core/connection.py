"""Build the redis-py client described by `RedisSettings`."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from .config import RedisSettings


def connect(settings: RedisSettings) -> redis.Redis | RedisCluster:
    """A client that fails fast: one socket timeout, no hidden retries.

    redis-py retries ten times with backoff by default, which turns an outage
    into a long hang; SharQ answers 503 at once and lets the caller retry. A
    connection the server closed is still replaced transparently by the pool.
    """
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout,
        "retry": Retry(NoBackoff(), 0),
        "username": settings.username or None,
        "password": settings.password or None,
    }
    if settings.clustered:
        if settings.url:
            return RedisCluster.from_url(settings.url, **options)
        return RedisCluster(host=settings.host, port=settings.port, **options)
    if settings.url:
        return redis.Redis.from_url(settings.url, **options)
    if settings.conn_type == "unix_sock":
        return redis.Redis(unix_socket_path=settings.unix_socket_path, db=settings.db, **options)
    return redis.Redis(host=settings.host, port=settings.port, db=settings.db, **options)
