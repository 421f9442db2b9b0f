--[[ finish: acknowledge active jobs of one queue type; then, optionally, take more.

Each job is gone for good. With a receipt, only the delivery that receipt names
may finish it: a slow worker cannot acknowledge the job another worker now
holds. With a dedupe window, the job_id is remembered as finished for that long,
so an enqueue of it in the same queue is refused meanwhile (see enqueue). With
`next` > 0 the same call then hands out up to `next` jobs, as dequeue does: a
busy worker acknowledges a batch and takes the next in one round trip.

KEYS[1]  active zset    "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  queues hash    queue_id -> interval (ms)
KEYS[3]  done zset      "<queue_id>:<job_id>" -> time (ms) it was finished
KEYS[4]  receipts hash  "<queue_id>:<job_id>" -> receipt of its current delivery
KEYS[5]  errors hash    "<queue_id>:<job_id>" -> the last error a worker reported
KEYS[6]  ready zset     queue_id -> next-ready time (ms), for `next`
then for job i (i = 1..n), two keys at 6 + 2(i-1):
  +1 jobs hash  job_id -> record, of its queue
  +2 last key   time (ms) of its queue's last dequeue
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"
ARGV[3]  how long (ms) to remember a dequeue time at least, once a queue is empty
ARGV[4]  dedupe window (ms); 0 = do not remember finished jobs
ARGV[5]  job_expire_interval (ms), for `next`
ARGV[6]  next: how many jobs to hand out after finishing (0 = none)
ARGV[7]  receipt token for `next` (see dequeue.lua)
then for job i, three values at 7 + 3(i-1):
  +1 queue_id  +2 job_id  +3 receipt ("" = any delivery)

Returns { now, wait, n, code_1 .. code_n, then per job taken: queue_id, job_id,
record, queue_length, receipt }: code_i is 1 finished, 0 not active (never
dequeued, finished already, or expired), -1 the receipt is not the current
delivery's; `wait` is as in dequeue.lua.
--]]
local active_key, queues_key, done_key, receipts_key, errors_key, ready_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = now_ms(ARGV[1])
local base, memory, window = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local expire, next_count, token = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]

local n = (#ARGV - 7) / 3
local result = { now, 0, n }
local finished = 0
for i = 1, n do
  local jobs_key, last_key = KEYS[6 + 2 * i - 1], KEYS[6 + 2 * i]
  local queue_id, job_id, receipt = ARGV[7 + 3 * i - 2], ARGV[7 + 3 * i - 1], ARGV[7 + 3 * i]
  local member = queue_id .. ':' .. job_id
  local code = 1
  local current = redis.call('HGET', receipts_key, member)
  if not redis.call('ZSCORE', active_key, member) or current == 'retry' then
    -- not active (or failed and waiting to be retried): no delivery to finish
    code = redis.call('HEXISTS', jobs_key, job_id) == 1 and receipt ~= '' and -1 or 0
  elseif receipt ~= '' and current ~= receipt then
    code = -1
  else
    redis.call('ZREM', active_key, member)
    redis.call('HDEL', receipts_key, member)
    redis.call('HDEL', errors_key, member)
    redis.call('HDEL', jobs_key, job_id)
    if redis.call('EXISTS', jobs_key) == 0 then
      forget_queue(queues_key, last_key, queue_id, memory)
    end
    if window > 0 then
      redis.call('ZADD', done_key, now, member)
    end
    finished = finished + 1
  end
  result[3 + i] = code
end
if finished > 0 and window > 0 then
  -- the whole set goes once nothing was finished for a window (the requeue pass
  -- trims it while the type is busy)
  redis.call('PEXPIRE', done_key, window)
end
if next_count > 0 then
  local _, wait = take(ready_key, active_key, queues_key, receipts_key, base, now, expire, next_count, token, result)
  result[2] = wait
end
return result
