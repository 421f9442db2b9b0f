--[[ requeue: the background pass over one queue type, one bounded batch.

An expired job goes back to the front of its queue with one requeue fewer left;
a job with none left (requeue_limit spent) moves to the dead-letter store (see
put_back in _helpers.lua). A job failed with retry_after_ms waits here too, as
an active job whose expiry is its due time. Delayed jobs that are due join their
queues, finished job_ids older than the dedupe window are trimmed, and timed
pauses that are over are dropped (a drained queue's would otherwise keep
counting as paused and keep its type listed). Queued and delayed jobs whose
deadline has passed expire (a dead letter with reason "expired"): at most
`batch` index entries a call, each a look at one job (a queued one is removed
from its list from the head, where the oldest and so the first to lapse wait);
an active job is left alone (put_back decides when its delivery ends). The
caller repeats until all came short of `batch`, so no call blocks Redis for long.

KEYS[1..19]  the type's keys (see _helpers.lua)
KEYS[20..]   the keys whose existence keeps the type live (keys.py `live_keys`)
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"
ARGV[3]  batch: the most jobs to handle (and to promote, and ids to trim)
ARGV[4]  how long (ms) to remember a dequeue time at least, once a queue is empty
ARGV[5]  dedupe window (ms)

Returns { handled, requeued, dead, trimmed, live, promoted, expired, swept } where
swept counts the deadline entries looked at, and live is 0
when the type holds no queued, active or dead job and no queue limits any more.
--]]
local k = type_keys()
local now = now_ms(ARGV[1])
local base, batch, memory, window = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

-- newest expiry first: each job is pushed in front of the ones handled before
-- it, so jobs of one queue come back in the order they were first dequeued
local expired = redis.call('ZREVRANGEBYSCORE', k.active, now, '-inf', 'LIMIT', 0, batch)
local requeued, dead, lapsed = 0, 0, 0
for _, member in ipairs(expired) do
  redis.call('ZREM', k.active, member)
  local sep = string.find(member, ':', 1, true)
  local queue_id, job_id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local outcome = put_back(k, base, queue_id, job_id, true, false, 'expired with no requeue left', now, memory)
  if outcome == 'requeued' then
    requeued = requeued + 1
  elseif outcome == 'dead' then
    dead = dead + 1
  elseif outcome == 'expired' then
    lapsed = lapsed + 1
  end
end

-- deadlines that have passed: a job still queued or delayed expires
local deadlines = redis.call('ZRANGEBYSCORE', deadlines_key(base), '-inf', now, 'LIMIT', 0, batch)
for _, member in ipairs(deadlines) do
  redis.call('ZREM', deadlines_key(base), member)
  local sep = string.find(member, ':', 1, true)
  local queue_id, job_id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local record = redis.call('HGET', base .. ':j:' .. queue_id, job_id)
  local deadline = record and deadline_of(limit_field_of(record))
  -- gone, enqueued again with another deadline, or active: nothing to do here
  if deadline and deadline <= now and not redis.call('ZSCORE', k.active, member) then
    local state = 'queued'
    if redis.call('ZREM', k.scheduled, member) == 1 then
      state = 'scheduled'
      if redis.call('HINCRBY', k.nsched, queue_id, -1) <= 0 then
        redis.call('HDEL', k.nsched, queue_id)
      end
    elseif queue_remove(base, queue_id, job_id, priority_of(limit_field_of(record))) then
      redis.call('HINCRBY', k.totals, 'queued', -1)
      refresh_head(k, base, queue_id)
    end
    expire_job(k, base, queue_id, job_id, record, now, memory, state)
    lapsed = lapsed + 1
    schedule_queue(k, base, queue_id, now)  -- unlisted if that was its last
  end
end
local promoted = promote(k, base, now, batch)
campaign_flush(k, base, now)
if requeued > 0 then
  redis.call('HINCRBY', k.totals, 'requeued', requeued)
end
if requeued + dead + lapsed + promoted > 0 then
  announce(base)
end

local pauses = redis.call('HGETALL', k.paused)
for i = 1, #pauses, 2 do
  local until_ms = tonumber(pauses[i + 1])
  if until_ms >= 0 and until_ms <= now then
    redis.call('HDEL', k.paused, pauses[i])
    schedule_queue(k, base, pauses[i], now)  -- listed again if it holds jobs
  end
end

-- finished (and cancelled) ids past the window are the lowest scores: drop at most `batch`
local stale = math.min(redis.call('ZCOUNT', k.done, '-inf', now - window), batch)
if stale > 0 then
  redis.call('ZREMRANGEBYRANK', k.done, 0, stale - 1)
end
redis.call('ZREMRANGEBYSCORE', base .. ':cancelled', '-inf', now - window)
return { #expired, requeued, dead, stale, redis.call('EXISTS', unpack(KEYS, TYPE_KEYS + 1)), promoted, lapsed, #deadlines }
