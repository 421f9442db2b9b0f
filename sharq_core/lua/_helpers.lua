-- Prepended to every script by scripts.py (once, at load): the helpers they share.

-- The time in ms: the caller's explicit clock when ARGV gives one, else Redis
-- TIME, so every server process agrees on one clock whatever its host's.
local function now_ms(given)
  local now = tonumber(given)
  if now then
    return now
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A queue that was empty has a job again: list it in the ready set, due now or,
-- if it was dequeued less than `interval` ago, once its rate limit allows.
local function mark_ready(ready_key, last_key, queue_id, interval, now)
  local due = now
  local last = tonumber(redis.call('GET', last_key))
  if last and last + interval > now then
    due = last + interval
  end
  redis.call('ZADD', ready_key, due, queue_id)
end

-- A queue's interval changes: the new rate counts from its last dequeue, and that
-- dequeue time is kept at least as long as the new interval needs it.
local function set_interval(queues_key, ready_key, last_key, queue_id, interval, now, memory)
  redis.call('HSET', queues_key, queue_id, interval)
  local last = tonumber(redis.call('GET', last_key))
  if last then
    redis.call('ZADD', ready_key, 'XX', last + interval, queue_id)
    redis.call('PEXPIRE', last_key, math.max(last + math.max(interval, memory) - now, 1))
  end
end

