--[[ layout: record over how many shards a queue type is spread, on one shard.

Only while the shard holds nothing that lives per queue (jobs, dead letters,
queue limits or pauses): a queue's shard follows from the count, so changing it
under live state would strand that state. Every shard (and the type's unsharded
keys, the authority servers read) holds the count, so a server routing by a
stale count is refused by enqueue, limits and pause (layout_ok) and retries.

KEYS[1..18]  the type's keys (see _helpers.lua)
KEYS[19..]   the keys whose existence keeps the type live (keys.py `live_keys`)
ARGV[1]  the shard count (1 = unsharded)

Returns 1 recorded, 0 refused: the shard holds live state.
--]]
local k = type_keys()
if redis.call('EXISTS', unpack(KEYS, TYPE_KEYS + 1)) > 0 then
  return 0
end
if ARGV[1] == '1' then
  redis.call('HDEL', k.settings, 'shards')
else
  redis.call('HSET', k.settings, 'shards', ARGV[1])
end
return 1
