"""Run by tests/test_autopipeline.py in a process of its own, patched by gevent as a
gunicorn gevent worker is: the engine then talks to Redis through AutoPipeline."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

from sharq_core import Config, RedisSettings, SharQ  # noqa: E402
from sharq_core.autopipeline import AutoPipeline  # noqa: E402


def main(url: str) -> None:
    sq = SharQ(Config(redis=RedisSettings(url=url, embedded=False)))
    assert isinstance(sq._pipeline, AutoPipeline)
    sq.redis.flushall()

    # 300 greenlets at once: their commands share writes, every reply finds its caller
    jobs = [gevent.spawn(sq.enqueue, n, 0, f"j{n}", f"q{n % 7}", "t") for n in range(300)]
    gevent.joinall(jobs, raise_error=True)
    taken = [gevent.spawn(sq.dequeue, "t") for _ in range(300)]
    gevent.joinall(taken, raise_error=True)
    got = [g.value for g in taken]
    assert sorted(job["payload"] for job in got) == list(range(300)), got[:3]
    assert all(job["job_id"] == f"j{job['payload']}" for job in got)

    sq.redis.script_flush()  # NOSCRIPT: the script is loaded again and the call retried
    sq.enqueue("after flush", 0, "x", "q", "t")
    assert sq.dequeue("t")["payload"] == "after flush"

    try:  # an error reply fails that call only
        sq._pipeline.call("NOSUCHCOMMAND")
    except redis.ResponseError:
        pass
    else:
        raise AssertionError("an error reply must raise")
    assert sq._pipeline.call("PING") == b"PONG"
    error, pong = sq._pipeline.call_many([("NOSUCHCOMMAND",), ("PING",)])
    assert isinstance(error, redis.ResponseError) and pong == b"PONG", (error, pong)

    sharded_batches(sq)

    sq.redis.client_kill_filter(_type="normal", skipme=True)  # the server drops us
    for _ in range(3):  # the first call may still see the dropped connection
        try:
            sq._pipeline.call("PING")
            break
        except redis.ConnectionError:
            continue
    assert sq._pipeline.call("PING") == b"PONG"

    acl_user(url)
    killed_connect()
    tls = SharQ(Config(redis=RedisSettings(url="rediss://" + url.split("://", 1)[1], embedded=False)))
    assert tls._pipeline is None  # redis-py speaks TLS; the auto-pipeline steps aside
    print("ok")


def sharded_batches(sq: SharQ) -> None:
    """A batch over shards sends its calls together (call_many): 20 greenlets'
    batches all land, and a flushed script cache is loaded again mid-batch."""
    sq.set_type_settings("s", 6)

    def batch(n: int) -> list:
        jobs = [{"queue_id": f"t{m}", "job_id": f"b{n}", "payload": m, "interval": 0} for m in range(30)]
        return sq.enqueue_many("s", jobs)

    batches = [gevent.spawn(batch, n) for n in range(20)]
    gevent.joinall(batches, raise_error=True)
    assert all(result["status"] == "queued" for job in batches for result in job.value)
    sq.redis.script_flush()
    assert {result["status"] for result in batch(20)} == {"queued"}
    taken = sq.dequeue_many("s", 100)["jobs"]
    acks = [{"queue_id": job["queue_id"], "job_id": job["job_id"], "receipt": job["receipt"]} for job in taken]
    results, more, _ = sq.finish_many("s", acks, next_count=10)
    assert [result["status"] for result in results] == ["success"] * 100 and len(more) == 10
    assert sq.type_stats("s")["counters"] == {"enqueued": 630, "dequeued": 110, "finished": 100, "failed": 0,
                                              "requeued": 0, "dead": 0, "expired": 0}  # fmt: skip


def acl_user(url: str) -> None:
    """An ACL user in the URL authenticates as AUTH user password (issue 8.2)."""
    admin = redis.Redis.from_url(url)
    admin.acl_setuser(
        "sharq-probe", enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    try:
        host = url.split("://", 1)[1]
        sq = SharQ(Config(redis=RedisSettings(url=f"redis://sharq-probe:s3cret@{host}", embedded=False)))
        assert isinstance(sq._pipeline, AutoPipeline)
        sq.enqueue("acl", 0, "acl", "q", "t")
        assert sq.dequeue("t")["payload"] == "acl"
        assert sq._pipeline.call("ACL", "WHOAMI") == b"sharq-probe"
        wrong = SharQ(Config(redis=RedisSettings(url=f"redis://sharq-probe:nope@{host}", embedded=False)))
        try:
            wrong.enqueue("x", 0, "x", "q", "t")
        except redis.AuthenticationError:
            pass
        else:
            raise AssertionError("a wrong password must be refused")
    finally:
        admin.acl_deluser("sharq-probe")


def killed_connect() -> None:
    """A greenlet killed while it connects for everyone: the callers waiting on
    that attempt fail at once instead of waiting for ever."""
    import socket

    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        port = blackhole.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port))  # fills the backlog: connects hang
        pipeline = AutoPipeline(RedisSettings(url=f"redis://127.0.0.1:{port}/0", socket_timeout=30, embedded=False))
        connecting = gevent.spawn(pipeline.call, "PING")
        gevent.sleep(0)  # it runs until it blocks inside connect()
        assert pipeline._attempt is not None
        waiting = gevent.spawn(pipeline.call, "PING")
        gevent.sleep(0)  # it waits on that attempt
        connecting.kill()
        waiting.join(timeout=5)
        filler.close()
    assert waiting.ready(), "a caller waited for ever on an attempt whose greenlet was killed"
    assert isinstance(waiting.exception, redis.ConnectionError), waiting.exception


if __name__ == "__main__":
    main(sys.argv[1])
