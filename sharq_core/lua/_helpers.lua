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

-- Tell every server that a job of this type may be ready now: long-polling
-- requests parked on the type wake up (`base` is "<prefix>:{<queue_type>}";
-- the channel is "<prefix>:ready", the message the queue type).
local function announce(base)
  local prefix, queue_type = string.match(base, '^(.*):{([^}]*)}$')
  redis.call('PUBLISH', prefix .. ':ready', queue_type)
end

-- Hand out up to `count` ready jobs, fairest queue first, each under a fresh
-- receipt `token`.<n>. Appends queue_id, job_id, record, queue_length, receipt
-- per job to `out`; returns how many were served and, when none was, the ms
-- until the earliest queued job is due (-1: nothing queued).
local function take(ready_key, active_key, queues_key, receipts_key, base, now, expire, count, token, out)
  local stats_key = base .. ':stats:' .. (now - (now % 60000))
  local served, wait = 0, 0
  while served < count do
    local head = redis.call('ZRANGE', ready_key, 0, 0, 'WITHSCORES')
    if #head == 0 then
      if served == 0 then wait = -1 end
      break
    end
    local queue_id, due = head[1], tonumber(head[2])
    if due > now then
      if served == 0 then wait = due - now end
      break
    end
    local queue_key = base .. ':q:' .. queue_id
    local job_id = redis.call('LPOP', queue_key)
    if job_id then
      local member = queue_id .. ':' .. job_id
      local record = redis.call('HGET', base .. ':j:' .. queue_id, job_id)
      local interval = tonumber(redis.call('HGET', queues_key, queue_id)) or 0
      local length = redis.call('LLEN', queue_key)
      local receipt = token .. '.' .. served
      redis.call('ZADD', active_key, now + expire, member)
      redis.call('HSET', receipts_key, member, receipt)
      if length > 0 then
        redis.call('ZADD', ready_key, now + interval, queue_id)
      else
        redis.call('ZREM', ready_key, queue_id)
      end
      -- kept without expiry while the queue holds jobs (see forget_queue)
      redis.call('SET', base .. ':last:' .. queue_id, now)
      redis.call('HINCRBY', stats_key, 'd:' .. queue_id, 1)
      out[#out + 1] = queue_id
      out[#out + 1] = job_id
      out[#out + 1] = record
      out[#out + 1] = length
      out[#out + 1] = receipt
      served = served + 1
    else
      redis.call('ZREM', ready_key, queue_id)
    end
  end
  -- the first count of the minute sets the expiry (see enqueue.lua)
  if served > 0 and redis.call('HINCRBY', stats_key, 'd', served) == served then
    redis.call('PEXPIRE', stats_key, 660000 - (now % 60000))
  end
  return served, wait
end

-- The parts of a job record "<requeues_remaining>:<requeue_limit>:<payload>".
local function parse_record(record)
  local a = string.find(record, ':', 1, true)
  local b = string.find(record, ':', a + 1, true)
  return tonumber(string.sub(record, 1, a - 1)), string.sub(record, a + 1, b - 1), string.sub(record, b + 1)
end

-- An active job's delivery is over and it returns to its queue: to the front
-- with one requeue fewer (when `counts` and its limit is not -1), or, when it
-- has none left or `dead` is asked, to the dead letters with `reason`. The
-- caller has removed it from the active set. `k` holds the type's keys: ready,
-- queues, dead, dead_at, receipts, errors. Returns 'requeued' or 'dead'.
local function put_back(k, base, queue_id, job_id, counts, dead, reason, now, memory)
  local member = queue_id .. ':' .. job_id
  local jobs_key, last_key = base .. ':j:' .. queue_id, base .. ':last:' .. queue_id
  local record = redis.call('HGET', jobs_key, job_id)
  redis.call('HDEL', k.receipts, member)
  if not record then
    return 'gone'
  end
  local remaining, limit, payload = parse_record(record)
  local interval = tonumber(redis.call('HGET', k.queues, queue_id)) or 0
  if dead or (counts and remaining == 0) then
    local last_error = redis.call('HGET', k.errors, member)
    redis.call('HDEL', k.errors, member)
    redis.call('HDEL', jobs_key, job_id)
    if redis.call('EXISTS', jobs_key) == 0 then
      forget_queue(k.queues, last_key, queue_id, memory)
    end
    redis.call('HSET', k.dead, member, cjson.encode({
      payload = payload, requeue_limit = tonumber(limit), interval = interval,
      reason = reason, last_error = last_error or cjson.null }))
    redis.call('ZADD', k.dead_at, now, member)
    return 'dead'
  end
  if counts and remaining > 0 then
    redis.call('HSET', jobs_key, job_id, (remaining - 1) .. ':' .. limit .. ':' .. payload)
  end
  if redis.call('LPUSH', base .. ':q:' .. queue_id, job_id) == 1 then
    mark_ready(k.ready, last_key, queue_id, interval, now)
  end
  return 'requeued'
end
