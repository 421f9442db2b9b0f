--[[ limits: set or clear a queue's own limits, which win over what enqueues carry.

Each of interval, burst, max_active and weight is given as a number (set it), ""
(keep it) or "-" (clear it; the caller sends a weight of 1, the default, as "-").
The override stays when the queue runs empty, until every field is cleared. A
queue may get limits before it holds any job. Quotas are kept apart, in
"<base>:quotas" (see quota_windows in _helpers.lua).

KEYS[1..19]  the type's keys (see _helpers.lua)
ARGV[1]  queue_id
ARGV[2]  key base "<prefix>:{<queue_type>}"
ARGV[3]  now in ms, or "" to read Redis TIME
ARGV[4]  interval (ms)
ARGV[5]  burst
ARGV[6]  max_active
ARGV[7]  how long (ms) to remember a dequeue time at least, once a queue is empty
ARGV[8]  the type's shard count the caller routed by (see layout_ok)
ARGV[9]  quotas: a spec "<limit>/<window_ms>/<offset_ms>;..." (set them), "" (keep
         them) or "-" (clear them); units used so far stay counted (see quota_windows)
ARGV[10] weight: the queue's share beside the type's other ready queues (see
         weighted_place in _helpers.lua); a change of it starts a new turn

An idle queue's rate state is kept long enough for the new interval (see
remember_rate in _helpers.lua): raising an hour's interval on a drained queue
still spaces its next job an hour from the last.

Returns 1, or 0 and nothing written when the shard count has changed.
--]]
local k = type_keys()
if not layout_ok(k, ARGV[8]) then
  return 0
end
local queue_id, base = ARGV[1], ARGV[2]
local now = now_ms(ARGV[3])

local fields = { parse_limits(redis.call('HGET', k.limits, queue_id)) }
local given = { ARGV[4], ARGV[5], ARGV[6], ARGV[10] }
local weight_was = fields[4]
for i = 1, 4 do
  if given[i] == '-' then
    fields[i] = ''
  elseif given[i] ~= '' then
    fields[i] = given[i]
  end
end
if fields[4] ~= weight_was then
  -- a new weight starts a new turn; the same one given again (a config sync)
  -- leaves the turn going, or a queue keeping its place would never give it up
  redis.call('HDEL', turns_key(base), queue_id)
  if (tonumber(fields[4]) or 1) > 1 and not weighted then
    redis.call('HSET', k.settings, 'weighted', 1)  -- the shard keeps turns from now on (turns_kept)
  end
end
if fields[4] == '' then
  fields[4] = nil  -- no weight of its own: the override reads as before weights
end
if ARGV[9] == '-' then
  redis.call('HDEL', base .. ':quotas', queue_id)
elseif ARGV[9] ~= '' then
  redis.call('HSET', base .. ':quotas', queue_id, ARGV[9])
end
if ARGV[9] ~= '' then
  redis.call('ZREM', base .. ':held', queue_id)  -- the next take holds it again if its new quotas do
end
local has_quotas = redis.call('HEXISTS', base .. ':quotas', queue_id) == 1
local with_quotas = redis.call('HLEN', base .. ':quotas')  -- read by type_limits with the type's own
if with_quotas > 0 then
  redis.call('HSET', k.settings, 'queue_quotas', with_quotas)
else
  redis.call('HDEL', k.settings, 'queue_quotas')
end
if fields[1] == '' and fields[2] == '' and fields[3] == '' and not fields[4] then
  redis.call('HDEL', k.limits, queue_id)
  if has_quotas then
    redis.call('ZADD', k.known, 0, queue_id)
  elseif redis.call('HEXISTS', k.queues, queue_id) == 0 then
    redis.call('ZREM', k.known, queue_id)
  end
else
  redis.call('HSET', k.limits, queue_id, table.concat(fields, '|'))
  redis.call('ZADD', k.known, 0, queue_id)
end
remember_rate(k, base, queue_id, tonumber(ARGV[7]), now, true)
schedule_queue(k, base, queue_id, now)
announce(base)
return 1
