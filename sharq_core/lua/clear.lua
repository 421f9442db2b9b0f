--[[ clear: delete a queue's queued jobs; with purge_all, its active jobs too.

Without purge_all, active jobs stay (they may still be finished) and so does the
queue's rate limit. With purge_all, nothing of the queue is left but its dead
letters and its past metrics.

KEYS[1]  queue list    job_ids in FIFO order
KEYS[2]  jobs hash     job_id -> record
KEYS[3]  ready zset    queue_id -> next-ready time (ms)
KEYS[4]  queues hash   queue_id -> interval (ms)
KEYS[5]  active zset   "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[6]  last key      time (ms) of the queue's last dequeue
ARGV[1]  queue_id
ARGV[2]  "1" to purge everything, "0" for queued jobs only

Returns the number of jobs deleted.
--]]
local queue_key, jobs_key, ready_key, queues_key, active_key, last_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local queue_id, purge_all = ARGV[1], ARGV[2] == '1'

local deleted = 0
local queued = redis.call('LRANGE', queue_key, 0, -1)
for _, job_id in ipairs(queued) do
  redis.call('HDEL', jobs_key, job_id)
  deleted = deleted + 1
end
redis.call('DEL', queue_key)
redis.call('ZREM', ready_key, queue_id)
if purge_all then
  for _, job_id in ipairs(redis.call('HKEYS', jobs_key)) do
    redis.call('ZREM', active_key, queue_id .. ':' .. job_id)
    deleted = deleted + 1
  end
  redis.call('DEL', jobs_key, last_key)
end
if redis.call('EXISTS', jobs_key) == 0 then
  redis.call('HDEL', queues_key, queue_id)
end
return deleted
