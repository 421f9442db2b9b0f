"""sharq_client.AsyncClient against a real sharq-server (issue 19.2): the same
methods and answers as Client, cancelled long polls that take nothing, timeouts
and tokens, importable without Flask, gevent or (until used) httpx."""

from __future__ import annotations

import asyncio
import inspect
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import pytest

from sharq_client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    DuplicateJob,
    NotFound,
    QueueFull,
    StaleReceipt,
    Unauthorized,
    Unavailable,
    calls,
)
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e

TOKEN = "tok"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"SHARQ_JOB_EXPIRE_INTERVAL": "900", "SHARQ_JOB_REQUEUE_INTERVAL": "100", "SHARQ_AUTH_TOKENS": TOKEN}
    # one worker process, so /deepstatus/'s `parked` counts every parked request
    server = ServerProcess(str(tmp_path_factory.mktemp("aio") / "data"), workers=1, env=env).start()
    yield server
    server.stop()


def run(server: ServerProcess, scenario: Callable[[AsyncClient], Awaitable[None]], timeout: float = 5) -> None:
    """Run `scenario` with a fresh AsyncClient in a fresh event loop."""

    async def main() -> None:
        async with AsyncClient(server.url, token=TOKEN, timeout=timeout) as client:
            await scenario(client)

    asyncio.run(main())


async def until(condition: Callable[[], Awaitable[object]], timeout: float = 10, what: str = "") -> None:
    """Await `condition` until it is truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def parked(client: AsyncClient, n: int) -> None:
    async def count() -> bool:
        return (await client.deep_status())["parked"] == n

    await until(count, what=f"{n} parked request(s)")


def test_async_client_covers_the_api_with_typed_errors(server: ServerProcess) -> None:
    async def scenario(client: AsyncClient) -> None:
        await client.enqueue("api", "q1", "a", {"n": 1}, interval=0, requeue_limit=2)
        with pytest.raises(DuplicateJob) as duplicate:
            await client.enqueue("api", "q1", "a", {"n": 1}, interval=0)
        assert duplicate.value.state == "queued" and duplicate.value.status == 409
        with pytest.raises(BadRequest, match="unknown field"):
            await client._call("POST", "/enqueue/api/q1/", {"job_id": "b", "payload": 1, "interval": 0, "x": 1})
        results = await client.enqueue_many("api", [{"queue_id": "q2", "job_id": "b", "payload": 2, "interval": 0}])
        assert results[0]["status"] == "queued"
        [job] = await client.dequeue("api")
        assert (job.job_id, job.payload, job.requeues_remaining) == ("a", {"n": 1}, 2)
        assert await client.touch("api", "q1", "a", job.receipt) > job.dequeued_at
        assert await client.fail("api", "q1", "a", job.receipt, error="boom") == "queued"
        assert (await client.job("api", "q1", "a"))["last_error"] == "boom"
        with pytest.raises(StaleReceipt):
            await client.finish("api", "q1", "a", job.receipt)
        batch = await client.finish_many("api", [], take=5)
        assert sorted(j.job_id for j in batch.jobs) == ["a", "b"]
        assert [r["status"] for r in (await client.finish_many("api", batch.jobs)).results] == ["success"] * 2
        with pytest.raises(NotFound):
            await client.finish("api", "q1", "a")
        assert await client.dequeue("api", wait=1) == []
        assert (await client.metrics("api"))["status"] == "success"

    run(server, scenario)


def test_a_conflict_that_is_not_about_a_receipt_is_conflict(server: ServerProcess) -> None:
    """Issue 23 (11): as Client, AsyncClient raises Conflict, not StaleReceipt, for a
    reshard refused while the type holds jobs."""

    async def scenario(client: AsyncClient) -> None:
        await client.enqueue("cf", "q", "held", 1, interval=0)
        with pytest.raises(Conflict) as conflict:
            await client.set_type_settings("cf", 2)
        assert type(conflict.value) is Conflict
        [job] = await client.dequeue("cf")
        await client.fail("cf", "q", "held", job.receipt)
        with pytest.raises(StaleReceipt):
            await client.touch("cf", "q", "held", job.receipt)

    run(server, scenario)


def test_async_client_covers_tenant_controls_delays_and_dead_letters(server: ServerProcess) -> None:
    async def scenario(client: AsyncClient) -> None:
        assert await client.enqueue("ctl", "q", "later", 1, interval=0, delay_ms=60_000) == "scheduled"
        due = (await client.job_status("ctl", "q", "later"))["due_at"]
        assert await client.enqueue("ctl", "q", "much-later", 1, interval=0, not_before=due + 1) == "scheduled"
        with pytest.raises(BadRequest, match="not both"):
            await client.enqueue("ctl", "q", "both", 1, interval=0, delay_ms=1, not_before=due)
        assert (await client.queue_info("ctl", "q"))["scheduled"] == 2
        assert await client.enqueue("ctl", "q", "now", 1, interval=0, max_queued_length=3) == "queued"
        assert (await client.queue("ctl", "q"))["queue_length"] == 1
        assert "enqueue_counts" in await client.type_stats("ctl")
        with pytest.raises(QueueFull):
            await client.enqueue("ctl", "q", "full", 1, interval=0, max_queued_length=3)
        assert (await client.set_limits("ctl", "q", max_active=1))["max_active"]["value"] == 1
        assert (await client.limits("ctl", "q"))["max_active"]["source"] == "override"
        await client.clear_limits("ctl", "q")
        assert await client.pause("ctl", "q") is None
        assert await client.dequeue("ctl") == []
        await client.resume("ctl", "q")
        [job] = await client.dequeue("ctl")
        assert await client.fail("ctl", "q", "now", job.receipt, error="no", dead=True) == "dead"
        assert [d["job_id"] for d in (await client.dead_letters("ctl"))["jobs"]] == ["now"]
        await client.retry_dead_letter("ctl", "q", "now")
        await client.interval("ctl", "q", 5)
        assert (await client.queues("ctl"))["queues"][0]["limits"]["interval"]["value"] == 5
        assert await client.delete_queue("ctl", "q", purge_all=True) == 3
        with pytest.raises(NotFound):
            await client.delete_dead_letter("ctl", "q", "now")
        assert (await client.deep_status())["status"] == "success"

    run(server, scenario)


def test_answers_are_the_same_as_clients(server: ServerProcess) -> None:
    """The same calls through Client and AsyncClient answer alike (views that do
    not move with the clock)."""
    sync = Client(server.url, token=TOKEN)
    sync.enqueue("same", "q", "a", {"n": 1}, interval=0)
    sync.set_limits("same", "q", burst=2)
    [job] = sync.dequeue("same")
    sync.fail("same", "q", "a", job.receipt, error="x", dead=True)
    views = [
        ("job", ("same", "q", "a")),
        ("limits", ("same", "q")),
        ("dead_letters", ("same",)),
        ("dequeue", ("same",)),
        ("pause", ("same", "q")),
    ]

    async def scenario(client: AsyncClient) -> None:
        for name, args in views:
            assert await getattr(client, name)(*args) == getattr(sync, name)(*args), name
        for call in (lambda c: c.finish("same", "q", "a"), lambda c: c.touch("same", "nope", "a")):
            with pytest.raises(NotFound) as mine:
                await call(client)
            with pytest.raises(NotFound) as theirs:
                call(sync)
            assert (mine.value.message, mine.value.body) == (theirs.value.message, theirs.value.body)

    run(server, scenario)
    sync.close()


async def _cancel(poll: asyncio.Task, poller: AsyncClient) -> None:
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll


async def _time_out(poll: asyncio.Task, poller: AsyncClient) -> None:
    with pytest.raises(TimeoutError):
        await poll  # asyncio.wait_for(..., 1) ends it


async def _close(poll: asyncio.Task, poller: AsyncClient) -> None:
    await poller.close()
    with pytest.raises(Unavailable):
        await poll


@pytest.mark.parametrize("end", [_cancel, _time_out, _close], ids=["cancel", "timeout", "close"])
def test_a_cancelled_long_poll_takes_nothing(server: ServerProcess, end) -> None:
    """Cancelling a parked dequeue (or closing its client) closes its connection,
    so the server hands it nothing: a job enqueued afterwards stays for another
    dequeue, and the client goes on working."""
    queue_type = f"cancel{end.__name__}"

    async def scenario(client: AsyncClient) -> None:
        async with client.clone() as poller:
            pool = poller.http
            poll = asyncio.create_task(asyncio.wait_for(poller.dequeue(queue_type, wait=20), 1))
            await parked(client, 1)
            await end(poll, poller)
            await client.enqueue(queue_type, "q", "a", 1, interval=0)
            [job] = await client.dequeue(queue_type, wait=5)
            assert job.job_id == "a"
            counts = (await client.metrics(queue_type, "q"))["dequeue_counts"]
            assert sum(counts.values()) == 1  # never handed to the cancelled request
            assert await poller.dequeue(queue_type) == []  # the client still works
        assert pool.is_closed  # `async with` closed its connections
        await parked(client, 0)

    run(server, scenario)


def test_concurrent_long_polls_share_the_pool_and_each_get_one_job(server: ServerProcess) -> None:
    async def scenario(client: AsyncClient) -> None:
        polls = [asyncio.create_task(client.dequeue("many", wait=10)) for _ in range(5)]
        await parked(client, 5)
        await client.enqueue_many(
            "many", [{"queue_id": f"q{n}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(5)]
        )
        taken = [job.job_id for jobs in await asyncio.gather(*polls) for job in jobs]
        assert sorted(taken) == [f"j{n}" for n in range(5)]

    run(server, scenario)


def test_a_long_poll_gets_its_wait_on_top_of_the_timeout(server: ServerProcess) -> None:
    async def scenario(client: AsyncClient) -> None:
        started = time.monotonic()
        assert await client.dequeue("idle", wait=1) == []
        assert 0.9 < time.monotonic() - started < 2

    run(server, scenario, timeout=0.5)


def test_the_bearer_token_is_sent(server: ServerProcess) -> None:
    async def scenario() -> None:
        for token in (None, "wrong"):
            async with AsyncClient(server.url, token=token) as client:
                with pytest.raises(Unauthorized) as refused:
                    await client.metrics()
                assert refused.value.status == 401
        async with AsyncClient(server.url, token=TOKEN) as client:
            assert (await client.metrics())["status"] == "success"

    asyncio.run(scenario())


def test_timeouts_and_unreachable_servers_raise_unavailable_as_client_does() -> None:
    """A server that accepts but never answers, and no server at all: the same
    Unavailable from both clients, within the timeout."""

    async def metrics(url: str) -> None:
        async with AsyncClient(url, timeout=0.3) as client:
            await client.metrics()

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes connections nobody reads
        for url in (f"http://127.0.0.1:{silent.getsockname()[1]}", "http://127.0.0.1:9"):
            with pytest.raises(Unavailable) as theirs:
                Client(url, timeout=0.3).metrics()
            started = time.monotonic()
            with pytest.raises(Unavailable) as mine:
                asyncio.run(metrics(url))
            assert time.monotonic() - started < 2
            assert type(mine.value) is type(theirs.value) and mine.value.status == theirs.value.status
            assert mine.value.message.startswith(f"SharQ at {url} did not answer")


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(value) for name, value in vars(cls).items() if not name.startswith("_")}


def test_every_client_method_is_on_async_client_with_the_same_signature() -> None:
    """AsyncClient has every public method of Client with the same arguments and
    answer (awaited: every method but clone)."""
    mine, theirs = _public(AsyncClient), _public(Client)
    assert sorted(theirs) == sorted(mine)
    for name, signature in theirs.items():
        expected = signature.replace(
            return_annotation=str(signature.return_annotation).replace("Client", "AsyncClient")
        )
        assert mine[name] == expected, name
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)) == (name != "clone"), name


def test_every_call_is_described_with_the_methods_arguments() -> None:
    """sharq_client.calls, which AsyncClient sends, takes each method's arguments."""
    for name, signature in _public(Client).items():
        if name not in ("clone", "close") and getattr(Client, name).__name__ == name:  # not an alias
            arguments = list(signature.parameters.values())[1:]
            assert inspect.signature(getattr(calls, name)).parameters == dict((a.name, a) for a in arguments), name


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_async_client_imports_without_flask_or_gevent() -> None:
    code = "import sys, sharq_client.aio; print('flask' not in sys.modules and 'gevent' not in sys.modules)"
    assert _python(code) == "True"


def test_without_httpx_only_async_client_is_missing() -> None:
    code = """
import sys
sys.modules['httpx'] = None
from sharq_client import Client
try:
    from sharq_client import AsyncClient
except ImportError as error:
    print(error)
"""
    assert "pip install 'sharq-client[async]'" in _python(code)
