--[[ type_limits: set or clear a queue type's type-wide limits, on one of its shards.

On top of each queue's own: a job goes out only when its queue and its type both
allow it (see type_gate in take). Each of interval, burst and max_active is given
as a number (set it), "" (keep it) or "-" (clear it). When a cap is set anew, the
slots its queues hold now are counted, so the cap is exact from the first job.

KEYS[1..19]  the type's keys (see _helpers.lua)
ARGV[1]  key base "<prefix>:{<queue_type>}"
ARGV[2]  interval (ms)
ARGV[3]  burst
ARGV[4]  max_active
ARGV[5]  quotas: a spec "<limit>/<window_ms>/<offset_ms>;..." (see quota_windows),
         "" (keep them) or "-" (clear them)
ARGV[6]  the type's shard count the caller routed by (see layout_ok), or "" for
         the change of the shard count itself, which holds the seal

Returns 1, or 0 and nothing written when the shard count has changed or a change
of it is under way (it would apply the limits it read before this call).
--]]
local k = type_keys()
if ARGV[6] ~= '' and not layout_ok(k, ARGV[6]) then
  return 0
end
for i, name in ipairs({ 'interval', 'burst', 'max_active', 'quotas' }) do
  local given = ARGV[1 + i]
  if given == '-' then
    redis.call('HDEL', k.settings, name)
  elseif given ~= '' then
    redis.call('HSET', k.settings, name, given)
  end
end
if redis.call('HEXISTS', k.settings, 'max_active') == 0 then
  redis.call('HDEL', k.settings, 'active')
elseif redis.call('HEXISTS', k.settings, 'active') == 0 then
  local held = 0
  for _, count in ipairs(redis.call('HVALS', k.nactive)) do
    held = held + tonumber(count)
  end
  redis.call('HSET', k.settings, 'active', held)
end
if redis.call('HEXISTS', k.settings, 'interval') == 0 then
  redis.call('HDEL', k.settings, 'last')
end
announce(ARGV[1])  -- a looser limit may let a parked poll's job go now
return 1
