"""sharq_client: a Python client and worker for a SharQ server.

    from sharq_client import Client, Worker

    client = Client("http://127.0.0.1:8080")
    client.enqueue("sms", "user001", "j1", {"to": "+15550100"}, interval=1000)
    Worker(client, "sms", send_sms, concurrency=8).run()

It needs neither Flask nor gevent: only urllib3. `AsyncClient` (asyncio) needs
httpx too: `pip install 'sharq-client[async]'`.
"""

from typing import Any

from .client import Batch, Client, Job
from .errors import (
    BadRequest,
    Conflict,
    DuplicateJob,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    SharqClientError,
    StaleReceipt,
    TooManyWaiting,
    Unauthorized,
    Unavailable,
)
from .worker import Retry, Throttle, Worker


def __getattr__(name: str) -> Any:
    """`AsyncClient` is imported on first use, so that this package needs no httpx."""
    if name == "AsyncClient":
        from .aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BadRequest",
    "Batch",
    "Client",
    "Conflict",
    "DuplicateJob",
    "Forbidden",
    "Job",
    "NotFound",
    "PayloadTooLarge",
    "QueueFull",
    "Retry",
    "SharqClientError",
    "StaleReceipt",
    "Throttle",
    "TooManyWaiting",
    "Unauthorized",
    "Unavailable",
    "Worker",
]
