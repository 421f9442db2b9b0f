--[[ pause: hold a queue (or a whole queue type) back, or let it go again.

A paused queue leaves the ready set: enqueues are still accepted, other queues
keep flowing and its active jobs can still be finished. A timed pause needs no
resume: the queue is listed again at the time the pause ends (the type's pause
key expires then), and long polls wake at that time.

KEYS[1..19]  the type's keys (see _helpers.lua)
ARGV[1]  "pause" or "resume"
ARGV[2]  queue_id, or "" for the whole type
ARGV[3]  for how long (ms), or "" for until resumed
ARGV[4]  key base "<prefix>:{<queue_type>}"
ARGV[5]  now in ms, or "" to read Redis TIME
ARGV[6]  the type's shard count the caller routed by (see layout_ok)

Returns the ms the pause ends (-1: until resumed) after a pause, 0 after a
resume, -2 and nothing written when the shard count has changed.
--]]
local k = type_keys()
if not layout_ok(k, ARGV[6]) then
  return -2
end
local action, queue_id, for_ms, base = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_ms(ARGV[5])
local until_ms = for_ms and now + for_ms or -1

if queue_id == '' then
  if action == 'pause' then
    if for_ms then
      redis.call('SET', k.type_paused, until_ms, 'PX', math.max(for_ms, 1))
    else
      redis.call('SET', k.type_paused, -1)
    end
  else
    redis.call('DEL', k.type_paused)
  end
else
  if action == 'pause' then
    redis.call('HSET', k.paused, queue_id, until_ms)
  else
    redis.call('HDEL', k.paused, queue_id)
    redis.call('ZREM', k.ready, queue_id)  -- listed anew: due now, or when its rate allows
  end
  schedule_queue(k, base, queue_id, now)
end
if action == 'resume' then
  announce(base)
  return 0
end
return until_ms
