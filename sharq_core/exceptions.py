"""Every failure the engine reports, each with the HTTP status the server answers.

The server maps `SharqError` to a response in one place (``sharq_server.errors``);
library users catch the subclass they care about.
"""


class SharqError(Exception):
    """Base of every SharQ failure; `status` is the HTTP code it maps to, and
    `details` are extra fields of the JSON answer (a duplicate's `state`, say)."""

    status = 500

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadArgumentException(SharqError):
    """An argument is missing, of the wrong type or out of range; nothing changed."""

    status = 400


class NotFound(SharqError):
    """The job or queue named does not exist in the state the call needs."""

    status = 404


class DuplicateJob(SharqError):
    """The job_id is already known in that queue (queued, active, dead-lettered, or
    finished within the dedupe window; `details["state"]` says which); nothing changed."""

    status = 409


class Conflict(SharqError):
    """The call cannot be honoured in the state things are in now (a type that
    holds jobs cannot be resharded, say); nothing changed."""

    status = 409


class StaleReceipt(SharqError):
    """The receipt names an earlier delivery of the job: another worker may hold it
    now (or it went back to its queue); nothing changed."""

    status = 409


class QueueFull(SharqError):
    """The queue already holds `max_queued_length` jobs; nothing changed."""

    status = 429


class BackendUnavailable(SharqError):
    """Redis did not answer in time, refused the connection or refused to write."""

    status = 503


class ShardsChanged(SharqError):
    """The queue type's shard count changed while this call was routed (twice):
    nothing was written; retrying is safe."""

    status = 503


class NotReplicated(BackendUnavailable):
    """The change is on the primary, but fewer replicas than `wait_replicas` confirmed
    it within `wait_timeout_ms`: a failover now may or may not keep it."""

    def __init__(self, replicas: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(
            f"the change reached {replicas} of the {wanted} replica(s) required within {timeout_ms} ms:"
            " it may or may not survive a failover. Retrying is safe: an enqueue with the same job_id"
            " answers 409 if the first one was kept, and jobs a dequeue took come back after"
            " job_expire_interval",
            reason="replicas",
            replicas=replicas,
            wait_replicas=wanted,
        )


# The seed library's name, kept so `except BadArgument` reads naturally too.
BadArgument = BadArgumentException
