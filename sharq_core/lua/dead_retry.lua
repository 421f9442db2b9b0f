--[[ dead_retry: give a dead-lettered job another life at the back of its queue
(of its priority).

It comes back with its original requeue_limit and options, and the queue's
current interval (or the one it had when it died, if the queue has gone since).
Its deadline stays unless the retry gives a new one; a retry that would leave
it with a deadline not after now is refused (it would never be handed out).

KEYS[1..19]  the type's keys (see _helpers.lua)
KEYS[20]     queue list    job_ids of priority 0 in FIFO order (see queue_list)
KEYS[21]     jobs hash     job_id -> record
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  queue_id
ARGV[3]  job_id
ARGV[4]  key base "<prefix>:{<queue_type>}"
ARGV[5]  a new deadline: "" keep the job's own, "+<ms>" that long from now, or epoch ms

A job of a campaign counts in it again (dead or expired to queued); one whose
campaign was cancelled stays dead.

Returns 1 requeued, 0 no such dead letter, -1 the job_id is queued or active
again, -2 its deadline is not after now, -3 its campaign was cancelled.
--]]
local k = type_keys()
local jobs_key = KEYS[TYPE_KEYS + 2]
local now = now_ms(ARGV[1])
local queue_id, job_id, base, new_deadline = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local member = queue_id .. ':' .. job_id

local raw = redis.call('HGET', k.dead, member)
if not raw then
  return 0
end
if redis.call('HEXISTS', jobs_key, job_id) == 1 then
  return -1
end
local dead = cjson.decode(raw)
local limit = string.format('%d', dead.requeue_limit)
local options = dead.options or ''
local deadline = dead.expire_at
if new_deadline ~= '' then
  options = string.gsub(options, '|x=[^|]*', '')
  deadline = string.sub(new_deadline, 1, 1) == '+' and now + tonumber(string.sub(new_deadline, 2)) or tonumber(new_deadline)
  options = options .. '|x=' .. string.format('%d', deadline)
end
if deadline and deadline <= now then
  return -2
end
if dead.campaign then
  if redis.call('HEXISTS', base .. ':cg:' .. dead.campaign, 'cancel') == 1 then
    return -3
  end
  campaign_move(dead.campaign, dead.reason == 'expired' and 'expired' or 'dead', 'queued')
  redis.call('SADD', base .. ':cgm:' .. dead.campaign, member)
end
redis.call('HDEL', k.dead, member)
redis.call('ZREM', k.dead_at, member)
redis.call('HSET', jobs_key, job_id, limit .. ':' .. limit .. options .. ':' .. now .. ':' .. dead.payload)
if deadline then
  index_deadline(base, member, deadline, now)
end
if redis.call('HSETNX', k.queues, queue_id, dead.interval) == 1 then
  redis.call('ZADD', k.known, 0, queue_id)
end
redis.call('PERSIST', base .. ':last:' .. queue_id)  -- the queue is live: its rate state stays
local first, overtook = queue_push(base, queue_id, job_id, priority_of(options), false)
if first then
  redis.call('ZADD', k.heads, now, queue_id)
end
if first or overtook then  -- overtook: it goes next, its cost says when
  schedule_queue(k, base, queue_id, now)
end
add_queued(k, base, now, 1)
campaign_flush(k, base, now)
announce(base)
return 1
