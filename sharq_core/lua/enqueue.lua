--[[ enqueue: add one or more jobs to queues of one queue type, atomically.

KEYS[1]  ready zset    queue_id -> time (ms) its next job may be dequeued
KEYS[2]  queues hash   queue_id -> interval (ms), for queues holding jobs
then for job i (i = 1..n), three keys at 2 + 3(i-1):
  +1 queue list  job_ids in FIFO order
  +2 jobs hash   job_id -> "<requeues_remaining>:<requeue_limit>:<payload>"
  +3 last key    time (ms) of the queue's last dequeue
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}" for the per-minute stats hash
ARGV[3]  how long (ms) to remember a dequeue time at least (see interval.lua)
then for job i, six values at 3 + 6(i-1):
  +1 queue_id  +2 job_id  +3 payload (JSON text)  +4 interval
  +5 requeue_limit  +6 max_queued_length ("" = unlimited)

Returns { type_was_empty, code_1, ..., code_n } where type_was_empty is 1 when
the type held no queue before this call (Python then lists the type), and code_i
is 1 queued, -1 job_id already queued or active in its queue, -2 queue full.
--]]
local ready_key, queues_key = KEYS[1], KEYS[2]
local now = now_ms(ARGV[1])
local minute = now - (now % 60000)
local stats_key = ARGV[2] .. ':stats:' .. minute
local memory = tonumber(ARGV[3])

local result = { redis.call('EXISTS', queues_key) == 0 and 1 or 0 }
local queued = 0
local n = (#ARGV - 3) / 6
for i = 1, n do
  local k, a = 2 + 3 * (i - 1), 3 + 6 * (i - 1)
  local queue_key, jobs_key, last_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local queue_id, job_id, payload = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local interval, limit, max_length = tonumber(ARGV[a + 4]), ARGV[a + 5], tonumber(ARGV[a + 6])
  local code = 1
  if redis.call('HEXISTS', jobs_key, job_id) == 1 then
    code = -1
  elseif max_length and redis.call('LLEN', queue_key) >= max_length then
    code = -2
  else
    redis.call('HSET', jobs_key, job_id, limit .. ':' .. limit .. ':' .. payload)
    if tonumber(redis.call('HGET', queues_key, queue_id)) ~= interval then
      set_interval(queues_key, ready_key, last_key, queue_id, interval, now, memory)
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
if queued > 0 and redis.call('HINCRBY', stats_key, 'e', queued) == queued then
  redis.call('PEXPIRE', stats_key, minute + 660000 - now)
end
return result
