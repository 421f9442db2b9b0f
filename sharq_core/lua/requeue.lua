--[[ requeue: put back expired active jobs of one queue type, one bounded batch.

An expired job goes back to the front of its queue with one requeue fewer left;
a job with none left (requeue_limit spent) moves to the dead-letter store (see
put_back in _helpers.lua). A job failed with retry_after_ms waits here too, as
an active job whose expiry is its due time. The same call trims finished job_ids
older than the dedupe window. The caller repeats until both came short of
`batch`, so no call blocks Redis for long.

KEYS[1]  active zset     "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  ready zset      queue_id -> next-ready time (ms)
KEYS[3]  queues hash     queue_id -> interval (ms)
KEYS[4]  dead hash       "<queue_id>:<job_id>" -> JSON {payload, requeue_limit, interval, reason, last_error}
KEYS[5]  dead_at zset    "<queue_id>:<job_id>" -> time (ms) it died
KEYS[6]  done zset       "<queue_id>:<job_id>" -> time (ms) it was finished
KEYS[7]  receipts hash   "<queue_id>:<job_id>" -> receipt of its current delivery
KEYS[8]  errors hash     "<queue_id>:<job_id>" -> the last error a worker reported
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}" (see dequeue.lua for the suffixes)
ARGV[3]  batch: the most jobs to handle (and the most finished ids to trim)
ARGV[4]  how long (ms) to remember a dequeue time at least, once a queue is empty
ARGV[5]  dedupe window (ms)

Returns { handled, requeued, dead, trimmed, live } where live is 0 when the
type holds no queued, active or dead job any more.
--]]
local k = { ready = KEYS[2], queues = KEYS[3], dead = KEYS[4], dead_at = KEYS[5], receipts = KEYS[7], errors = KEYS[8] }
local active_key, done_key = KEYS[1], KEYS[6]
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
  local outcome = put_back(k, base, queue_id, job_id, true, false, 'expired with no requeue left', now, memory)
  if outcome == 'requeued' then
    requeued = requeued + 1
  elseif outcome == 'dead' then
    dead = dead + 1
  end
end
if requeued > 0 then
  announce(base)
end

-- finished ids past the window are the lowest scores: drop at most `batch`
local stale = math.min(redis.call('ZCOUNT', done_key, '-inf', now - window), batch)
if stale > 0 then
  redis.call('ZREMRANGEBYRANK', done_key, 0, stale - 1)
end
return { #expired, requeued, dead, stale, redis.call('EXISTS', KEYS[3], KEYS[4]) }
