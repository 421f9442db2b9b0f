"""The shapes the HTTP API takes and answers, as typed models.

Request bodies are what the app reads its known fields from (`Body`) and what the
OpenAPI document describes; the answers' shared shapes (a job, an error, a queue,
limits) are written once here and referenced from every route that returns them.
The bounds are the engine's (`sharq_core.validation`), which checks the values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from sharq_core import validation as check
from sharq_core.base import MAX_BATCH, MAX_LIMIT
from sharq_core.delivery import MAX_ERROR
from sharq_core.quotas import MAX_QUOTAS, MAX_WINDOW, MIN_WINDOW
from sharq_core.shards import MAX_SHARDS


def bounded(minimum: int, maximum: int, description: str | None = None) -> Any:
    """An integer from `minimum` to `maximum`, as the engine checks it."""
    return Annotated[int, Meta(ge=minimum, le=maximum, description=description)]


IDENTIFIER_PATTERN = "^[A-Za-z0-9_-]{1,100}$"  # sharq_core.validation.identifier
Identifier = Annotated[str, Meta(pattern=IDENTIFIER_PATTERN)]
Receipt = Annotated[str, Meta(pattern="^[0-9a-f]{16}\\.[0-9]{1,3}$")]
Interval = bounded(0, check.MAX_INTERVAL, "ms between two dequeues")
RequeueLimit = bounded(-1, check.MAX_REQUEUE_LIMIT, "requeues before a job is dead-lettered; -1: forever")
QueuedLength = bounded(1, check.MAX_QUEUED_LENGTH, "refuse the job when its queue holds this many")
DelayMs = bounded(0, check.MAX_INTERVAL, "schedule it this many ms from now")
NotBefore = bounded(0, check.MAX_TIME, "schedule it for this epoch ms")
ExpireAt = bounded(0, check.MAX_TIME, "never hand it out after this epoch ms (Redis clock); must be later than now")
TtlMs = bounded(1, check.MAX_INTERVAL, "never hand it out later than this many ms after the enqueue (or retry)")
Priority = bounded(0, check.MAX_PRIORITY, "hand it out before every job of a lower priority in its queue")
ShownPriority = Annotated[int, Meta(ge=1, le=check.MAX_PRIORITY, description="the job's priority; absent: 0")]
CampaignId = Annotated[str, Meta(pattern=IDENTIFIER_PATTERN, description="count it in this campaign of the type")]
RetryAfterMs = bounded(0, check.MAX_INTERVAL)
LimitValue = bounded(1, MAX_LIMIT)
Weight = bounded(1, check.MAX_WEIGHT, "turns a round beside the type's other ready queues (1: the default)")
TypeInterval = bounded(1, check.MAX_INTERVAL, "ms between two dequeues of the type")
Shards = bounded(1, MAX_SHARDS, "hash tags the type is spread over (1: unsharded)")
ForMs = bounded(1, check.MAX_INTERVAL, "resume by itself after this many ms; null: until resumed")
Cost = bounded(1, check.MAX_COST, "units the job counts against its queue's and type's limits (default 1)")
RealCost = bounded(
    1,
    check.MAX_COST,
    "units the job really cost (needs the receipt): more than its cost charges the difference to the rate state",
)


class Body(Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: a field it does not list is refused (400)."""


class NewJob(Body):
    """One job to enqueue; an optional field absent or null takes the config's default (or no limit)."""

    job_id: Identifier
    payload: Any
    interval: Interval
    requeue_limit: RequeueLimit | None = None
    max_queued_length: QueuedLength | None = None
    delay_ms: DelayMs | None = None
    not_before: NotBefore | None = None
    expire_at: ExpireAt | None = None
    ttl_ms: TtlMs | None = None
    campaign: CampaignId | None = None
    cost: Cost | None = None
    priority: Priority | None = None


class BatchJob(NewJob, kw_only=True):
    """One job of a batch: a job and the queue it goes to."""

    queue_id: Identifier


class NewJobs(Body):
    jobs: Annotated[list[BatchJob], Meta(min_length=1, max_length=MAX_BATCH)]


class Delivery(Body):
    """Names the delivery acted on: the receipt its dequeue handed out."""

    receipt: Receipt | None = None


class Finished(Delivery):
    """A finish: the delivery it acknowledges, and what the job really cost."""

    cost: RealCost | None = None


class Ack(Finished, kw_only=True):
    """One job of a batch finish."""

    queue_id: Identifier
    job_id: Identifier


class Acks(Body):
    jobs: Annotated[list[Ack], Meta(max_length=MAX_BATCH)]


class Failed(Finished):
    """How a job failed: retry it (now or after retry_after_ms), or dead-letter it."""

    error: Annotated[str, Meta(max_length=MAX_ERROR)] | None = None
    retry_after_ms: RetryAfterMs | None = None
    dead: bool = False
    throttle: Annotated[bool, Meta(description="upstream said 429: pause the queue retry_after_ms")] = False
    release: Annotated[
        bool, Meta(description="the worker gives the job back unfinished (it is stopping): no requeue spent")
    ] = False


class Retry(Body):
    """A dead letter's retry: the job keeps its deadline unless one of these gives a new one."""

    expire_at: ExpireAt | None = None
    ttl_ms: TtlMs | None = None


class NewInterval(Body):
    interval: Interval


class Quota(Body):
    """At most `limit` units per fixed window of `window_ms`, aligned to the epoch plus `offset_ms`."""

    limit: LimitValue
    window_ms: bounded(MIN_WINDOW, MAX_WINDOW, "1 s to 31 days")
    offset_ms: Annotated[int, Meta(ge=-MAX_WINDOW, le=MAX_WINDOW, description="from -window_ms to window_ms")] = 0


Quotas = Annotated[list[Quota], Meta(min_length=1, max_length=MAX_QUOTAS)]


class NewLimits(Body):
    """A value sets the limit, null clears it, an absent one stays as it is."""

    interval: Interval | None = None
    burst: LimitValue | None = None
    max_active: LimitValue | None = None
    weight: Weight | None = None
    quotas: Quotas | None = None


class NewTypeLimits(Body):
    """The type's own limits, on top of each queue's: a value sets one, null clears
    it, an absent one stays as it is."""

    interval: TypeInterval | None = None
    burst: LimitValue | None = None
    max_active: LimitValue | None = None
    quotas: Quotas | None = None


class NewTypeSettings(Body):
    shards: Shards


class PauseFor(Body):
    for_ms: ForMs | None = None


class Purge(Body):
    purge_all: bool = False


class OnDone(Body):
    """The job a campaign enqueues once done, job_id `campaign-done.<id>`; its
    payload holds this payload and the final counts."""

    queue_type: Identifier
    queue_id: Identifier
    payload: Any


class CampaignSettings(Body):
    on_done: OnDone


class NoFields(Body):
    """Nothing to give: any field is refused."""


# -- answers ----------------------------------------------------------------------


class Error(Struct):
    """Every refusal and failure; some carry more fields (state, reason, retry_after_ms...)."""

    status: Literal["failure"]
    message: str


class NotReady(Error):
    """No job is ready: retry_after_ms says when the earliest is due (null: none queued)."""

    retry_after_ms: int | None = None
    paused: bool | UnsetType = UNSET


class Blocked(Error):
    """The type still holds state that lives per queue, so its shard count cannot
    change: `blocked_by` says what, by kind (queues_with_jobs, queues_with_limits,
    paused_queues, queues_with_quotas: their total and the first few ids; active_jobs, dead_letters:
    how many; type_paused)."""

    blocked_by: dict[str, Any]


class DequeuedJob(Struct, kw_only=True):
    """A job handed out; give its receipt to finish, touch and fail."""

    queue_id: Identifier
    job_id: Identifier
    payload: Any
    requeues_remaining: Annotated[int, Meta(ge=-1)]
    current_queue_length: Annotated[int, Meta(ge=0)]
    dequeued_at: Annotated[int, Meta(description="Redis time of the dequeue, epoch ms")] | UnsetType = UNSET
    receipt: str | UnsetType = UNSET
    expires_at: Annotated[int, Meta(description="back to its queue unless finished, epoch ms")] | UnsetType = UNSET
    cost: Annotated[int, Meta(ge=2, description="units it counts against its limits; absent: 1")] | UnsetType = UNSET
    priority: ShownPriority | UnsetType = UNSET


class JobResult(Struct, kw_only=True):
    """One job's outcome in a batch: status success/queued/scheduled, or failure with code and message."""

    queue_id: str
    job_id: str
    status: str
    code: int | UnsetType = UNSET
    message: str | UnsetType = UNSET
    state: str | UnsetType = UNSET


class DeadLetter(Struct, kw_only=True):
    queue_id: Identifier
    job_id: Identifier
    died_at: int
    payload: Any
    requeue_limit: int
    reason: str
    last_error: str | None
    expire_at: Annotated[int, Meta(description="the job's deadline, epoch ms")] | UnsetType = UNSET
    priority: ShownPriority | UnsetType = UNSET


class Campaign(Struct, kw_only=True):
    """A campaign's counts (they always sum to total); done once it has jobs (or was
    cancelled) and none is queued, scheduled or active."""

    queue_type: Identifier
    campaign: Identifier
    total: int
    queued: int
    scheduled: int
    active: int
    finished: int
    dead: int
    expired: int
    cancelled: int
    done: bool
    started_at: int
    ended_at: int | None
    cancelled_at: int | None
    on_done: OnDone | None
    on_done_enqueued_at: int | None


class Sourced(Struct):
    value: int | None
    source: Literal["override", "last enqueue", "default"]


class QuotaUse(Struct, kw_only=True):
    """One quota window now: units used of `limit` since it began, and when it resets (epoch ms)."""

    limit: int
    window_ms: int
    offset_ms: int
    used: int
    remaining: int
    resets_at: int


class EffectiveLimits(Struct, kw_only=True):
    interval: Sourced
    burst: Sourced
    max_active: Sourced
    weight: Sourced
    quotas: Annotated[list[QuotaUse], Meta(description="the queue's own quotas, when it has any")] | UnsetType = UNSET


class QueueView(Struct, kw_only=True):
    queue_id: Identifier
    queue_length: int
    active: int
    scheduled: int
    limits: EffectiveLimits
    paused: bool
    paused_until: int | None
    next_ready_at: int | None
    oldest_queued_age_ms: int | None
    quota_held_until: Annotated[
        int | None, Meta(description="while a quota of the queue's own holds its next job: when it lets it go")
    ]
    priorities: (
        Annotated[dict[str, int], Meta(description="queued jobs per priority, once one above 0 is queued")] | UnsetType
    ) = UNSET


class AutoscaleInputs(Struct, kw_only=True):
    """What the wanted concurrency came from, summed over the type's shards."""

    queues: Annotated[int, Meta(description="backlogged queues, not paused")]
    unlimited_queues: Annotated[int, Meta(description="of them, with neither rate limit nor cap")]
    rate: Annotated[float, Meta(description="jobs/s the rate-limited ones allow together")]
    demand: Annotated[float, Meta(description="sum of min(rate x duration, cap), or backlog, over them")]
    queued: int
    active: int
    type_rate: Annotated[float, Meta(description="jobs/s the type-wide interval allows")] | None
    type_max_active: int | None


class Autoscale(Struct, kw_only=True):
    """How many jobs of the type could usefully run at once now: what to scale workers to."""

    queue_type: Identifier
    wanted_concurrency: Annotated[int, Meta(ge=0)]
    job_duration_seconds: Annotated[float, Meta(description="hand-out to finish, a moving average")]
    job_duration_source: Literal["measured", "default"]
    type_paused: bool
    bound: Annotated[
        Literal["queues", "active", "jobs", "type_rate", "type_max_active", "paused", "mixed"],
        Meta(description="what decided: the queues' demand, the jobs running, the jobs held, a type-wide limit"),
    ]
    inputs: AutoscaleInputs
    shards: int


ANSWERS = (
    Error, NotReady, Blocked, DequeuedJob, JobResult, DeadLetter, EffectiveLimits, QueueView, Autoscale, Campaign,
)  # fmt: skip


def fields_of(body: type[Body]) -> tuple[str, ...]:
    """The fields a body may carry."""
    return body.__struct_fields__


def schemas(models: list[type[Struct]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each model's schema (a reference) and the components they refer to."""
    return msgspec.json.schema_components(models, ref_template="#/components/schemas/{name}")
