--[[ interval: change a queue's rate limit while it runs.

The new interval counts from the queue's last dequeue, so raising it delays the
next job and lowering it lets the next one out sooner.

KEYS[1]  queues hash   queue_id -> interval (ms)
KEYS[2]  ready zset    queue_id -> next-ready time (ms)
KEYS[3]  last key      time (ms) of the queue's last dequeue
ARGV[1]  queue_id
ARGV[2]  interval (ms)
ARGV[3]  key base "<prefix>:{<queue_type>}" (a lower interval may make it due now)

Returns 1 updated, 0 the queue holds no queued or active job.
--]]
local queues_key, ready_key, last_key = KEYS[1], KEYS[2], KEYS[3]
local queue_id, interval = ARGV[1], tonumber(ARGV[2])

if redis.call('HEXISTS', queues_key, queue_id) == 0 then
  return 0
end
set_interval(queues_key, ready_key, last_key, queue_id, interval)
announce(ARGV[3])
return 1
