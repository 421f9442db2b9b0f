--[[ dead_retry: give a dead-lettered job another life at the back of its queue.

It comes back with its original requeue_limit and options (cost...), and the queue's current interval
(or the one it had when it died, if the queue has gone since).

KEYS[1..18]  the type's keys (see _helpers.lua)
KEYS[19]     queue list    job_ids in FIFO order
KEYS[20]     jobs hash     job_id -> record
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  queue_id
ARGV[3]  job_id
ARGV[4]  key base "<prefix>:{<queue_type>}"

Returns 1 requeued, 0 no such dead letter, -1 the job_id is queued or active again.
--]]
local k = type_keys()
local queue_key, jobs_key = KEYS[TYPE_KEYS + 1], KEYS[TYPE_KEYS + 2]
local now = now_ms(ARGV[1])
local queue_id, job_id, base = ARGV[2], ARGV[3], ARGV[4]
local member = queue_id .. ':' .. job_id

local raw = redis.call('HGET', k.dead, member)
if not raw then
  return 0
end
if redis.call('HEXISTS', jobs_key, job_id) == 1 then
  return -1
end
local dead = cjson.decode(raw)
local limit = string.format('%d', dead.requeue_limit)
redis.call('HDEL', k.dead, member)
redis.call('ZREM', k.dead_at, member)
redis.call('HSET', jobs_key, job_id, limit .. ':' .. limit .. (dead.options or '') .. ':' .. now .. ':' .. dead.payload)
if redis.call('HSETNX', k.queues, queue_id, dead.interval) == 1 then
  redis.call('ZADD', k.known, 0, queue_id)
end
redis.call('PERSIST', base .. ':last:' .. queue_id)  -- the queue is live: its rate state stays
if redis.call('RPUSH', queue_key, job_id) == 1 then
  redis.call('ZADD', k.heads, now, queue_id)
  schedule_queue(k, base, queue_id, now)
end
redis.call('HINCRBY', k.totals, 'queued', 1)
announce(base)
return 1
