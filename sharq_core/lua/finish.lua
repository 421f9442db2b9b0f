--[[ finish: acknowledge an active job; it is gone for good.

With a dedupe window, the job_id is remembered as finished for that long, so an
enqueue of the same job_id in the same queue is refused meanwhile (see enqueue).

KEYS[1]  active zset   "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  jobs hash     job_id -> record, of this queue
KEYS[3]  queues hash   queue_id -> interval (ms)
KEYS[4]  last key      time (ms) of the queue's last dequeue
KEYS[5]  done zset     "<queue_id>:<job_id>" -> time (ms) it was finished
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  queue_id
ARGV[3]  job_id
ARGV[4]  how long (ms) to remember a dequeue time at least, once the queue is empty
ARGV[5]  dedupe window (ms); 0 = do not remember finished jobs

Returns 1 finished, 0 the job is not active (never dequeued, finished already,
or expired and requeued).
--]]
local active_key, jobs_key, queues_key, last_key, done_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local queue_id, job_id = ARGV[2], ARGV[3]
local memory, window = tonumber(ARGV[4]), tonumber(ARGV[5])
local member = queue_id .. ':' .. job_id

if redis.call('ZREM', active_key, member) == 0 then
  return 0
end
redis.call('HDEL', jobs_key, job_id)
if redis.call('EXISTS', jobs_key) == 0 then
  forget_queue(queues_key, last_key, queue_id, memory)
end
if window > 0 then
  redis.call('ZADD', done_key, now_ms(ARGV[1]), member)
  -- the whole set goes once nothing was finished for a window (the requeue pass
  -- trims it while the type is busy)
  redis.call('PEXPIRE', done_key, window)
end
return 1
