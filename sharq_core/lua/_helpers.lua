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

-- A queue's interval changes: the new rate counts from its last dequeue (kept
-- without expiry while the queue holds jobs, see forget_queue).
local function set_interval(queues_key, ready_key, last_key, queue_id, interval)
  redis.call('HSET', queues_key, queue_id, interval)
  local last = tonumber(redis.call('GET', last_key))
  if last then
    redis.call('ZADD', ready_key, 'XX', last + interval, queue_id)
  end
end

-- A queue's last queued or active job is gone: it leaves the queues hash, and its
-- last dequeue time is kept `max(interval, memory)` more ms (never less than it
-- already has), so a refill within that time still waits for the rate limit.
local function forget_queue(queues_key, last_key, queue_id, memory)
  local interval = tonumber(redis.call('HGET', queues_key, queue_id)) or 0
  redis.call('HDEL', queues_key, queue_id)
  local keep = math.max(interval, memory)
  if redis.call('PTTL', last_key) < keep then
    redis.call('PEXPIRE', last_key, keep)
  end
end
