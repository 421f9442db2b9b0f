--[[ requeue: put back expired active jobs of one queue type, one bounded batch.

An expired job goes back to the front of its queue with one requeue fewer left;
a job with none left (requeue_limit spent) moves to the dead-letter store. The
same call trims finished job_ids older than the dedupe window. The caller
repeats until both came short of `batch`, so no call blocks Redis for long.

KEYS[1]  active zset     "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  ready zset      queue_id -> next-ready time (ms)
KEYS[3]  queues hash     queue_id -> interval (ms)
KEYS[4]  dead hash       "<queue_id>:<job_id>" -> JSON {payload, requeue_limit, interval, reason}
KEYS[5]  dead_at zset    "<queue_id>:<job_id>" -> time (ms) it died
KEYS[6]  done zset       "<queue_id>:<job_id>" -> time (ms) it was finished
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}" (see dequeue.lua for the suffixes)
ARGV[3]  batch: the most jobs to handle (and the most finished ids to trim)
ARGV[4]  how long (ms) to remember a dequeue time at least, once a queue is empty
ARGV[5]  dedupe window (ms)

Returns { handled, requeued, dead, trimmed, live } where live is 0 when the
type holds no queued, active or dead job any more.
--]]
local active_key, ready_key, queues_key, dead_key, dead_at_key, done_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = now_ms(ARGV[1])
local base, batch, memory, window = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

-- newest expiry first: each job is pushed in front of the ones handled before
-- it, so jobs of one queue come back in the order they were first dequeued
local expired = redis.call('ZREVRANGEBYSCORE', active_key, now, '-inf', 'LIMIT', 0, batch)
local requeued, dead = 0, 0
for _, member in ipairs(expired) do
  redis.call('ZREM', active_key, member)
  local sep = string.find(member, ':', 1, true)
  local queue_id, job_id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local jobs_key, last_key = base .. ':j:' .. queue_id, base .. ':last:' .. queue_id
  local record = redis.call('HGET', jobs_key, job_id)
  if record then
    local a = string.find(record, ':', 1, true)
    local b = string.find(record, ':', a + 1, true)
    local remaining, limit = tonumber(string.sub(record, 1, a - 1)), string.sub(record, a + 1, b - 1)
    local payload = string.sub(record, b + 1)
    local interval = tonumber(redis.call('HGET', queues_key, queue_id)) or 0
    if remaining == 0 then
      redis.call('HDEL', jobs_key, job_id)
      if redis.call('EXISTS', jobs_key) == 0 then
        forget_queue(queues_key, last_key, queue_id, memory)
      end
      redis.call('HSET', dead_key, member, cjson.encode({
        payload = payload, requeue_limit = tonumber(limit), interval = interval,
        reason = 'expired with no requeue left' }))
      redis.call('ZADD', dead_at_key, now, member)
      dead = dead + 1
    else
      if remaining > 0 then
        redis.call('HSET', jobs_key, job_id, (remaining - 1) .. ':' .. limit .. ':' .. payload)
      end
      if redis.call('LPUSH', base .. ':q:' .. queue_id, job_id) == 1 then
        mark_ready(ready_key, last_key, queue_id, interval, now)
      end
      requeued = requeued + 1
    end
  end
end

-- finished ids past the window are the lowest scores: drop at most `batch`
local stale = math.min(redis.call('ZCOUNT', done_key, '-inf', now - window), batch)
if stale > 0 then
  redis.call('ZREMRANGEBYRANK', done_key, 0, stale - 1)
end
return { #expired, requeued, dead, stale, redis.call('EXISTS', queues_key, dead_key) }
