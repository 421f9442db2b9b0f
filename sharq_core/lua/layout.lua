--[[ layout: change over how many shards a queue type is spread, on one shard.

A change seals every shard involved first (old, new and the type's unsharded keys,
which hold the count servers read): a sealed shard refuses every script that would
create per-queue state (layout_ok), so no server, however stale its cached
count, can add state while the change runs. Sealing is refused while the shard
holds anything that lives per queue (jobs, dead letters, queue limits, pauses):
a queue's shard follows from the count, so that state would be stranded; the
change then opens what it sealed at the count it had and nothing changed. Once
every shard is sealed and what drained queues left behind has moved, the change
opens each at the new count (the unsharded keys last) with the type's rate state.

KEYS[1..19]  the type's keys (see _helpers.lua)
KEYS[20..]   the keys whose existence keeps the type live (keys.py `live_keys`)
ARGV[1]  "seal" or "open"
ARGV[2]  for "open": the shard count to open at (1 = unsharded)
ARGV[3]  for "open": the type-wide rate state (`last`) this shard starts from:
         a number, "-" to drop it, "" to keep it

Returns 1, or 0 when "seal" is refused: the shard holds live state.
--]]
local k = type_keys()
local action = ARGV[1]
if action == 'seal' then
  if redis.call('EXISTS', unpack(KEYS, TYPE_KEYS + 1)) > 0 then
    return 0
  end
  redis.call('HSET', k.settings, 'sealed', 1)
  return 1
end
if ARGV[2] == '1' then
  redis.call('HDEL', k.settings, 'shards')
else
  redis.call('HSET', k.settings, 'shards', ARGV[2])
end
if ARGV[3] == '-' then
  redis.call('HDEL', k.settings, 'last')
elseif ARGV[3] ~= '' then
  redis.call('HSET', k.settings, 'last', ARGV[3])
end
redis.call('HDEL', k.settings, 'sealed')
return 1
