--[[ requeue: the background pass over one queue type, one bounded batch.

An expired job goes back to the front of its queue with one requeue fewer left;
a job with none left (requeue_limit spent) moves to the dead-letter store (see
put_back in _helpers.lua). A job failed with retry_after_ms waits here too, as
an active job whose expiry is its due time. Delayed jobs that are due join their
queues, finished job_ids older than the dedupe window are trimmed, and timed
pauses that are over are dropped (a drained queue's would otherwise keep
counting as paused and keep its type listed). The
caller repeats until all came short of `batch`, so no call blocks Redis for long.

KEYS[1..18]  the type's keys (see _helpers.lua)
KEYS[19..]   the keys whose existence keeps the type live (keys.py `live_keys`)
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"
ARGV[3]  batch: the most jobs to handle (and to promote, and ids to trim)
ARGV[4]  how long (ms) to remember a dequeue time at least, once a queue is empty
ARGV[5]  dedupe window (ms)

Returns { handled, requeued, dead, trimmed, live, promoted } where live is 0
when the type holds no queued, active or dead job and no queue limits any more.
--]]
local k = type_keys()
local now = now_ms(ARGV[1])
local base, batch, memory, window = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

-- newest expiry first: each job is pushed in front of the ones handled before
-- it, so jobs of one queue come back in the order they were first dequeued
local expired = redis.call('ZREVRANGEBYSCORE', k.active, now, '-inf', 'LIMIT', 0, batch)
local requeued, dead = 0, 0
for _, member in ipairs(expired) do
  redis.call('ZREM', k.active, member)
  local sep = string.find(member, ':', 1, true)
  local queue_id, job_id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local outcome = put_back(k, base, queue_id, job_id, true, false, 'expired with no requeue left', now, memory)
  if outcome == 'requeued' then
    requeued = requeued + 1
  elseif outcome == 'dead' then
    dead = dead + 1
  end
end
local promoted = promote(k, base, now, batch)
campaign_flush(k, base, now)
if requeued > 0 then
  redis.call('HINCRBY', k.totals, 'requeued', requeued)
end
if requeued + dead + promoted > 0 then
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
return { #expired, requeued, dead, stale, redis.call('EXISTS', unpack(KEYS, TYPE_KEYS + 1)), promoted }
