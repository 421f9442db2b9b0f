--[[ finish: acknowledge an active job; it is gone for good.

KEYS[1]  active zset   "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  jobs hash     job_id -> record, of this queue
KEYS[3]  queues hash   queue_id -> interval (ms)
ARGV[1]  queue_id
ARGV[2]  job_id

Returns 1 finished, 0 the job is not active (never dequeued, finished already,
or expired and requeued).
--]]
local active_key, jobs_key, queues_key = KEYS[1], KEYS[2], KEYS[3]
local queue_id, job_id = ARGV[1], ARGV[2]

if redis.call('ZREM', active_key, queue_id .. ':' .. job_id) == 0 then
  return 0
end
redis.call('HDEL', jobs_key, job_id)
if redis.call('EXISTS', jobs_key) == 0 then
  -- no queued or active job left: the queue is no longer listed
  redis.call('HDEL', queues_key, queue_id)
end
return 1
