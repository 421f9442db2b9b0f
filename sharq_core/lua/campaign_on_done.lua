--[[ campaign_on_done: set what a campaign enqueues when it is done (on the type's
first shard). Refused once its job was enqueued: it happens once.

KEYS[1]  campaign hash
KEYS[2]  campaigns zset   id -> ms started
KEYS[3]  notify zset      id -> ms on_done was set, until its job is enqueued
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  campaign id
ARGV[3]  on_done as JSON {queue_type, queue_id, payload}
ARGV[4]  its payload as JSON text (spliced into the job's payload as given)
ARGV[5]  the job's requeue_limit

Returns 1 set, 0 its job was enqueued already.
--]]
local now = now_ms(ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'notified') == 1 then
  return 0
end
if redis.call('HSETNX', KEYS[1], 'started', now) == 1 then
  redis.call('HSET', KEYS[1], 'total', 0, 'queued', 0, 'scheduled', 0, 'active', 0)
  redis.call('ZADD', KEYS[2], now, ARGV[2])
end
redis.call('HSET', KEYS[1], 'on_done', ARGV[3], 'on_done_payload', ARGV[4], 'on_done_limit', ARGV[5])
redis.call('ZADD', KEYS[3], now, ARGV[2])
return 1
