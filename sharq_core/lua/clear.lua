--[[ clear: delete a queue's queued jobs (with purge_all, its active jobs too), one
bounded batch per call.

Without purge_all, active jobs stay (they may still be finished). Either way the
queue's last dequeue time stays, so a refill still waits for the rate limit. The
caller repeats with the returned `next` until it is 'done':
  'queued'  (the first call) delete up to `batch` jobs from the head of the list;
  a cursor  (purge_all, once the list is empty) an HSCAN position in the jobs
            hash: delete up to about `batch` of the queue's active jobs.

KEYS[1]  queue list    job_ids in FIFO order
KEYS[2]  jobs hash     job_id -> record
KEYS[3]  ready zset    queue_id -> next-ready time (ms)
KEYS[4]  queues hash   queue_id -> interval (ms)
KEYS[5]  active zset   "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[6]  last key      time (ms) of the queue's last dequeue
KEYS[7]  receipts hash "<queue_id>:<job_id>" -> receipt of its current delivery
KEYS[8]  errors hash   "<queue_id>:<job_id>" -> the last error a worker reported
ARGV[1]  queue_id
ARGV[2]  "1" to purge active jobs too, "0" for queued jobs only
ARGV[3]  batch: the most jobs to delete in this call
ARGV[4]  where to go on: 'queued' or an HSCAN cursor
ARGV[5]  how long (ms) to remember a dequeue time at least, once the queue is empty

Returns { deleted, next } with next 'queued', a cursor, or 'done'.
--]]
local queue_key, jobs_key, ready_key, queues_key, active_key, last_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local queue_id, purge_all, batch, at, memory = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])

local deleted, next = 0, 'done'
if at == 'queued' then
  local queued = redis.call('LRANGE', queue_key, 0, batch - 1)
  for _, job_id in ipairs(queued) do
    redis.call('HDEL', jobs_key, job_id)
    redis.call('HDEL', KEYS[8], queue_id .. ':' .. job_id)
  end
  deleted = #queued
  redis.call('LTRIM', queue_key, #queued, -1)
  if redis.call('EXISTS', queue_key) == 1 then
    next = 'queued'
  else
    redis.call('ZREM', ready_key, queue_id)
    if purge_all then next = '0' end
  end
else
  -- only the queue's queued jobs were deleted before, so what is left is active
  -- (or was enqueued meanwhile, and is skipped: it is in the list, not active)
  local page = redis.call('HSCAN', jobs_key, at, 'COUNT', batch)
  local fields = page[2]
  for i = 1, #fields, 2 do
    local member = queue_id .. ':' .. fields[i]
    if redis.call('ZREM', active_key, member) == 1 then
      redis.call('HDEL', KEYS[7], member)
      redis.call('HDEL', KEYS[8], member)
      redis.call('HDEL', jobs_key, fields[i])
      deleted = deleted + 1
    end
  end
  if page[1] ~= '0' then next = page[1] end
end
if next == 'done' and redis.call('EXISTS', jobs_key) == 0 and redis.call('HEXISTS', queues_key, queue_id) == 1 then
  forget_queue(queues_key, last_key, queue_id, memory)
end
return { deleted, next }
