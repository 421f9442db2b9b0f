--[[ interval: change a queue's rate limit while it runs.

The new interval counts from the queue's last dequeue, so raising it delays the
next job and lowering it lets the next one out sooner. When the queue has an
interval of its own (PUT /limits), that is the one changed; an override holding
only burst or max_active is left alone, so later enqueues' intervals still count.

KEYS[1..19]  the type's keys (see _helpers.lua)
ARGV[1]  queue_id
ARGV[2]  interval (ms)
ARGV[3]  key base "<prefix>:{<queue_type>}"
ARGV[4]  now in ms, or "" to read Redis TIME
ARGV[5]  how long (ms) to remember a dequeue time at least, once a queue is empty

Returns 1 updated, 0 the queue holds no queued or active job.
--]]
local k = type_keys()
local queue_id, interval, base = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms(ARGV[4])

if redis.call('HEXISTS', k.queues, queue_id) == 0 then
  return 0
end
local own, burst, max_active, weight = parse_limits(redis.call('HGET', k.limits, queue_id))
if own ~= '' then
  local kept = weight ~= '' and ('|' .. weight) or ''
  redis.call('HSET', k.limits, queue_id, interval .. '|' .. burst .. '|' .. max_active .. kept)
else
  redis.call('HSET', k.queues, queue_id, interval)
end
remember_rate(k, base, queue_id, tonumber(ARGV[5]), now, true)
schedule_queue(k, base, queue_id, now)
announce(base)
return 1
