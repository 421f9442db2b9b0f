--[[ campaign_done_send: enqueue a done campaign's on_done job into its queue, on
the shard of the on_done type that the queue maps to, once. The shard remembers
whose on_done jobs it took ("<type>/<campaign id>" in its sent hash) until the
campaign is forgotten, so a requeue pass that died before noting the job
enqueued (campaign_notified), or one that overtook it, never enqueues it again:
not even once the job was finished and forgotten (dedupe_window_ms 0).

KEYS[1..19]  the on_done type's keys (see _helpers.lua)
KEYS[20]     sent hash   "<type>/<campaign id>" -> ms its on_done job was enqueued
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<on_done type or shard>}"
ARGV[3]  the type's shard count the caller routed by (see layout_ok)
ARGV[4]  "<type>/<campaign id>"
ARGV[5]  queue_id
ARGV[6]  job_id ("campaign-done.<id>")
ARGV[7]  payload (JSON text)
ARGV[8]  requeue_limit

Returns 1 enqueued now, 0 enqueued before, -1 and nothing written when the shard
count has changed (route again).
--]]
local k = type_keys()
local now = now_ms(ARGV[1])
if not layout_ok(k, ARGV[3]) then
  return -1
end
if redis.call('HSETNX', KEYS[20], ARGV[4], now) == 0 then
  return 0
end
enqueue_done_job(k, ARGV[2], ARGV[5], ARGV[6], ARGV[7], ARGV[8], now)
return 1
