--[[ view: what one queue, or one page of a type's queues, looks like now.

Read only. The page walks the type's known queues (those holding jobs or limits
of their own) in queue_id order, so its cost grows with the page, not the type.

KEYS[1..19]  the type's keys (see _helpers.lua)
ARGV[1]  key base "<prefix>:{<queue_type>}"
ARGV[2]  now in ms, or "" to read Redis TIME
ARGV[3]  "ids" (ARGV[4..] the queue_ids) or "page" (ARGV[4] offset, ARGV[5] limit)

Returns { now, total known queues, type paused until (or false), then per queue
18 values: queue_id, queue_length, active, scheduled, interval, interval_source,
burst, burst_source, max_active, max_active_source, weight, weight_source,
paused_until, next_ready_at, oldest_enqueued_at, has_jobs, quota_held_until,
by_priority } with false for what does not apply; quota_held_until is when the
queue's own quotas let its head job go, while they hold it (quota_hold, as the take
decides); by_priority is { priority, length, ... } for each priority holding queued
jobs, highest first, and empty unless one above 0 does (a few LLEN: see queue_list).
--]]
local k = type_keys()
local base, now = ARGV[1], now_ms(ARGV[2])
local ids
if ARGV[3] == 'ids' then
  ids = { unpack(ARGV, 4) }
else
  local offset = tonumber(ARGV[4])
  ids = redis.call('ZRANGE', k.known, offset, offset + tonumber(ARGV[5]) - 1)
end

local result = { now, redis.call('ZCARD', k.known), tonumber(redis.call('GET', k.type_paused)) or false }
for _, queue_id in ipairs(ids) do
  local queue_key = base .. ':q:' .. queue_id
  local present = queue_priorities(base, queue_id)
  local by_priority = {}
  for p in string.gmatch(present, '%d') do
    by_priority[#by_priority + 1] = tonumber(p)
    by_priority[#by_priority + 1] = redis.call('LLEN', queue_list(base, queue_id, tonumber(p)))
  end
  local length = redis.call('LLEN', queue_key)
  if present ~= '' and length > 0 then
    by_priority[#by_priority + 1] = 0
    by_priority[#by_priority + 1] = length
  end
  for i = 2, #by_priority, 2 do
    length = length + (by_priority[i - 1] > 0 and by_priority[i] or 0)
  end
  local given = tonumber(redis.call('HGET', k.queues, queue_id))
  local i, b, m, w = parse_limits(redis.call('HGET', k.limits, queue_id))
  local oldest = false
  local head = redis.call('LINDEX', queue_key, 0)
  if present ~= '' then
    oldest = tonumber(redis.call('ZSCORE', k.heads, queue_id)) or false  -- the oldest of its priorities' heads
  elseif head then
    local record = redis.call('HGET', base .. ':j:' .. queue_id, head)
    if record then
      local _, _, enqueued = parse_record(record)
      oldest = tonumber(enqueued)
    end
  end
  local held = false
  if head or present ~= '' then
    local quotas = quota_windows(redis.call('HGET', base .. ':quotas', queue_id))
    held = quotas and quota_hold(base, queue_id, quotas, head_cost(base, queue_id), now) or false
  end
  local paused = tonumber(redis.call('HGET', k.paused, queue_id))
  if paused and paused >= 0 and paused <= now then paused = nil end
  local values = {
    queue_id,
    length,
    tonumber(redis.call('HGET', k.nactive, queue_id)) or 0,
    tonumber(redis.call('HGET', k.nsched, queue_id)) or 0,
    tonumber(i) or given or false, i ~= '' and 'override' or (given and 'last enqueue' or 'default'),
    tonumber(b) or 1, b ~= '' and 'override' or 'default',
    tonumber(m) or false, m ~= '' and 'override' or 'default',
    tonumber(w) or 1, w ~= '' and 'override' or 'default',
    paused or false,
    tonumber(redis.call('ZSCORE', k.ready, queue_id)) or false,
    oldest,
    redis.call('HEXISTS', k.queues, queue_id),
    held,
    by_priority,
  }
  for _, value in ipairs(values) do
    result[#result + 1] = value
  end
end
return result
