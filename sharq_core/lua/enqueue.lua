--[[ enqueue: add one or more jobs to queues of one queue type, atomically.

A job_id already known in its queue is refused, whatever state it is in: queued,
active, dead-lettered (its dead letter must be retried or deleted first, so no
record is ever overwritten) or finished less than `dedupe window` ms ago (so a
producer retrying after a 503 never queues a second copy).

KEYS[1]  ready zset    queue_id -> time (ms) its next job may be dequeued
KEYS[2]  queues hash   queue_id -> interval (ms), for queues holding jobs
KEYS[3]  active zset   "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[4]  dead hash     "<queue_id>:<job_id>" -> JSON dead-letter record
KEYS[5]  done zset     "<queue_id>:<job_id>" -> time (ms) it was finished
then for job i (i = 1..n), three keys at 5 + 3(i-1):
  +1 queue list  job_ids in FIFO order
  +2 jobs hash   job_id -> "<requeues_remaining>:<requeue_limit>:<payload>"
  +3 last key    time (ms) of the queue's last dequeue
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}" for the per-minute stats hash
ARGV[3]  dedupe window (ms); 0 = finished jobs are not remembered
then for job i, six values at 3 + 6(i-1):
  +1 queue_id  +2 job_id  +3 payload (JSON text)  +4 interval
  +5 requeue_limit  +6 max_queued_length ("" = unlimited)

Returns { type_was_empty, code_1, ..., code_n } where type_was_empty is 1 when
the type held no queue before this call (Python then lists the type), and code_i
is 1 queued, -1 already queued, -2 queue full, -3 already active, -4 dead-lettered,
-5 finished within the dedupe window.
--]]
local ready_key, queues_key, active_key, dead_key, done_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms(ARGV[1])
local minute = now - (now % 60000)
local stats_key = ARGV[2] .. ':stats:' .. minute
local window = tonumber(ARGV[3])

-- the code of a job_id that is known in its queue, or nil
local function known(jobs_key, queue_id, job_id)
  local member = queue_id .. ':' .. job_id
  if redis.call('HEXISTS', jobs_key, job_id) == 1 then
    return redis.call('ZSCORE', active_key, member) and -3 or -1
  end
  if redis.call('HEXISTS', dead_key, member) == 1 then
    return -4
  end
  local done = tonumber(redis.call('ZSCORE', done_key, member))
  if done and done > now - window then
    return -5
  end
  return nil
end

local result = { redis.call('EXISTS', queues_key) == 0 and 1 or 0 }
local queued = 0
local n = (#ARGV - 3) / 6
for i = 1, n do
  local k, a = 5 + 3 * (i - 1), 3 + 6 * (i - 1)
  local queue_key, jobs_key, last_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local queue_id, job_id, payload = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local interval, limit, max_length = tonumber(ARGV[a + 4]), ARGV[a + 5], tonumber(ARGV[a + 6])
  local code = known(jobs_key, queue_id, job_id)
  if not code and max_length and redis.call('LLEN', queue_key) >= max_length then
    code = -2
  end
  if not code then
    code = 1
    redis.call('HSET', jobs_key, job_id, limit .. ':' .. limit .. ':' .. payload)
    redis.call('PERSIST', last_key)  -- the queue is live: its rate memory stays
    if tonumber(redis.call('HGET', queues_key, queue_id)) ~= interval then
      set_interval(queues_key, ready_key, last_key, queue_id, interval)
    end
    if redis.call('RPUSH', queue_key, job_id) == 1 then
      mark_ready(ready_key, last_key, queue_id, interval, now)
    end
    redis.call('HINCRBY', stats_key, 'e:' .. queue_id, 1)
    queued = queued + 1
  end
  result[i + 1] = code
end
-- the first count of the minute sets the expiry: the oldest of the ten buckets
-- metrics reads started 9 minutes before this one
if queued > 0 then
  if redis.call('HINCRBY', stats_key, 'e', queued) == queued then
    redis.call('PEXPIRE', stats_key, minute + 660000 - now)
  end
  announce(ARGV[2])
end
return result
