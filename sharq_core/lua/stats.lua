--[[ stats: one type's figures for monitoring, read in one consistent step.

Constant work per type but for `capped` and `paused`, which visit the queues
that have limits of their own or a pause (HGETALL of those hashes).

KEYS[1..19]  the type's keys (see _helpers.lua)
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"

Returns { now, totals (flat HGETALL of the totals hash), active, scheduled, dead,
ready, waiting, paused, capped, type_paused, oldest, type_limits, quota_held }: `ready` queues are due now,
`waiting` ones wait for their rate (or a timed pause), `paused` counts queue
pauses not yet over, `capped` queues at their concurrency cap, `type_paused` 1 when the whole
type is paused, `oldest` the ms the oldest queued job was enqueued (or false), `type_limits` the
type-wide interval, burst, max_active and the slots they count as held, `quota_held` the
queues a quota of their own holds now (listed by the take in "<base>:held", see note_held;
they count among `waiting` too).
--]]
local k = type_keys()
local now = now_ms(ARGV[1])
local capped = 0
local limits = redis.call('HGETALL', k.limits)
for i = 1, #limits, 2 do
  local _, _, cap = parse_limits(limits[i + 1])
  cap = tonumber(cap)
  if cap and (tonumber(redis.call('HGET', k.nactive, limits[i])) or 0) >= cap then
    capped = capped + 1
  end
end
local paused = 0
local pauses = redis.call('HGETALL', k.paused)
for i = 2, #pauses, 2 do
  local until_ms = tonumber(pauses[i])
  if until_ms < 0 or until_ms > now then
    paused = paused + 1
  end
end
return {
  now,
  redis.call('HGETALL', k.totals),
  redis.call('ZCARD', k.active),
  redis.call('ZCARD', k.scheduled),
  redis.call('HLEN', k.dead),
  redis.call('ZCOUNT', k.ready, '-inf', now),
  redis.call('ZCOUNT', k.ready, '(' .. now, '+inf'),
  paused,
  capped,
  redis.call('EXISTS', k.type_paused),
  tonumber((redis.call('ZRANGE', k.heads, 0, 0, 'WITHSCORES'))[2]) or false,
  redis.call('HMGET', k.settings, 'interval', 'burst', 'max_active', 'active'),
  redis.call('ZCOUNT', ARGV[2] .. ':held', '(' .. now, '+inf'),
}
