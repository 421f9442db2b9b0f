--[[ autoscale: what one shard of a queue type needs to say how many jobs could
usefully run at once (the engine's `autoscale` does the arithmetic).

Constant work however many queues the type holds: the demand sums the scripts
keep in the settings hash (see count_demand in _helpers.lua), the measured job
duration, the type's queued and active jobs and its type-wide limits; and, for
queues with neither a rate limit nor a cap (whose share is their jobs, queued
and running), those of at most `sample` backlogged queues picked at random
(HRANDFIELD).

KEYS[1..19]  the type's keys (see _helpers.lua)
ARGV[1]  key base "<prefix>:{<queue_type>}"
ARGV[2]  sample: the most backlogged queues whose length is read

Returns { type_paused, duration, queued, active, backlogged, sums, sampled,
sampled_length, type_interval, type_cap }: type_paused 1 while the type is
paused; duration the measured job duration in ms (a string; false until a job
was finished); backlogged the queues counted in the sums; sums the flat
HGETALL-style list of the "demand:*" fields without their prefix; sampled how
many unlimited queues the sample found and sampled_length their jobs (queued
and active); the
type-wide interval and cap as this shard applies them (false when unset).
--]]
local k = type_keys()
local base, sample = ARGV[1], tonumber(ARGV[2])

local sums = {}
local settings = redis.call('HGETALL', k.settings)
for i = 1, #settings, 2 do
  local name = string.match(settings[i], '^demand:(.*)$')
  if name then
    sums[#sums + 1] = name
    sums[#sums + 1] = settings[i + 1]
  end
end
local sampled, sampled_length = 0, 0
if redis.call('HEXISTS', k.settings, 'demand:f') == 1 then
  local picked = redis.call('HRANDFIELD', k.demand, sample, 'WITHVALUES')
  for i = 1, #picked, 2 do
    if picked[i + 1] == 'f=1' then
      sampled = sampled + 1
      sampled_length = sampled_length + queue_length(base, picked[i])
        + (tonumber(redis.call('HGET', k.nactive, picked[i])) or 0)
    end
  end
end
local type_wide = type_limits(k) or {}
return {
  redis.call('EXISTS', k.type_paused),
  redis.call('HGET', k.settings, 'duration'),
  tonumber(redis.call('HGET', k.totals, 'queued')) or 0,
  redis.call('ZCARD', k.active),
  redis.call('HLEN', k.demand),
  sums,
  sampled,
  sampled_length,
  type_wide.interval or false,
  type_wide.cap or false,
}
