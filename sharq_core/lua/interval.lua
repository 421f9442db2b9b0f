--[[ interval: change a queue's rate limit while it runs.

The new interval counts from the queue's last dequeue, so raising it delays the
next job and lowering it lets the next one out sooner.

KEYS[1]  queues hash   queue_id -> interval (ms)
KEYS[2]  ready zset    queue_id -> next-ready time (ms)
KEYS[3]  last key      time (ms) of the queue's last dequeue
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  queue_id
ARGV[3]  interval (ms)
ARGV[4]  how long (ms) to remember a dequeue time at least

Returns 1 updated, 0 the queue holds no queued or active job.
--]]
local queues_key, ready_key, last_key = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms(ARGV[1])
local queue_id, interval, memory = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

if redis.call('HEXISTS', queues_key, queue_id) == 0 then
  return 0
end
set_interval(queues_key, ready_key, last_key, queue_id, interval, now, memory)
return 1
