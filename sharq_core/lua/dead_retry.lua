--[[ dead_retry: give a dead-lettered job another life at the back of its queue.

It comes back with its original requeue_limit, and the queue's current interval
(or the one it had when it died, if the queue has gone since).

KEYS[1]  dead hash     "<queue_id>:<job_id>" -> JSON dead-letter record
KEYS[2]  dead_at zset  "<queue_id>:<job_id>" -> time (ms) it died
KEYS[3]  queue list    job_ids in FIFO order
KEYS[4]  jobs hash     job_id -> record
KEYS[5]  ready zset    queue_id -> next-ready time (ms)
KEYS[6]  queues hash   queue_id -> interval (ms)
KEYS[7]  last key      time (ms) of the queue's last dequeue
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  queue_id
ARGV[3]  job_id
ARGV[4]  key base "<prefix>:{<queue_type>}" (to wake long-polling workers)

Returns 1 requeued, 0 no such dead letter, -1 the job_id is queued or active again.
--]]
local dead_key, dead_at_key, queue_key, jobs_key, ready_key, queues_key, last_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now = now_ms(ARGV[1])
local queue_id, job_id = ARGV[2], ARGV[3]
local member = queue_id .. ':' .. job_id

local raw = redis.call('HGET', dead_key, member)
if not raw then
  return 0
end
if redis.call('HEXISTS', jobs_key, job_id) == 1 then
  return -1
end
local dead = cjson.decode(raw)
local interval = tonumber(redis.call('HGET', queues_key, queue_id)) or dead.interval
local limit = string.format('%d', dead.requeue_limit)
redis.call('HDEL', dead_key, member)
redis.call('ZREM', dead_at_key, member)
redis.call('HSET', jobs_key, job_id, limit .. ':' .. limit .. ':' .. dead.payload)
redis.call('HSET', queues_key, queue_id, interval)
redis.call('PERSIST', last_key)  -- the queue is live: its rate memory stays
if redis.call('RPUSH', queue_key, job_id) == 1 then
  mark_ready(ready_key, last_key, queue_id, interval, now)
end
announce(ARGV[4])
return 1
