--[[ campaign_cancel: cancel a campaign on one shard, one bounded batch per call.

The first call marks the campaign cancelled (enqueues naming it are refused from
then on, and a job of it that comes back from a delivery ends instead of
returning to its queue, see put_back); each call then walks up to `batch` of
its member set and removes the jobs still queued or scheduled, each counted
cancelled and kept in the cancelled set for GET /job/. Active jobs end as they
would. The caller repeats with the returned cursor until it is "0".

KEYS[1..19]  the type's keys (see _helpers.lua)
KEYS[20]     campaign hash   (keys.py `campaign`)
KEYS[21]     member set      "<q>:<j>" of the campaign's jobs
KEYS[22]     campaigns zset  id -> ms started
KEYS[23]     cancelled zset  "<q>:<j>" -> ms cancelled
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"
ARGV[3]  campaign id
ARGV[4]  batch: the most members to look at
ARGV[5]  "start" on the first call, else the SSCAN cursor returned

Returns { cancelled, next cursor ("0": done) }.
--]]
local k = type_keys()
local key, members, index, cancelled_key = KEYS[TYPE_KEYS + 1], KEYS[TYPE_KEYS + 2], KEYS[TYPE_KEYS + 3], KEYS[TYPE_KEYS + 4]
local now = now_ms(ARGV[1])
local base, id, batch, cursor = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]

if cursor == 'start' then
  if redis.call('HSETNX', key, 'started', now) == 1 then
    redis.call('HSET', key, 'total', 0, 'queued', 0, 'scheduled', 0, 'active', 0)
    redis.call('ZADD', index, now, id)
  end
  redis.call('HSETNX', key, 'cancel', now)
  cursor = '0'
end
skip_absent_overrides(k)
local page = redis.call('SSCAN', members, cursor, 'COUNT', batch)
local cancelled, unqueued = 0, 0
for _, member in ipairs(page[2]) do
  local sep = string.find(member, ':', 1, true)
  local queue_id, job_id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local jobs_key = base .. ':j:' .. queue_id
  local record = redis.call('HGET', jobs_key, job_id)
  local state = nil
  if record and campaign_in(record) == id then
    if redis.call('ZREM', k.scheduled, member) == 1 then
      if redis.call('HINCRBY', k.nsched, queue_id, -1) <= 0 then redis.call('HDEL', k.nsched, queue_id) end
      state = 'scheduled'
    elseif not redis.call('ZSCORE', k.active, member)
        and queue_remove(base, queue_id, job_id, priority_of(limit_field_of(record))) then
      unqueued = unqueued + 1
      refresh_head(k, base, queue_id)
      schedule_queue(k, base, queue_id, now)
      state = 'queued'
    end
  end
  if state then
    redis.call('HDEL', jobs_key, job_id)
    redis.call('HDEL', k.errors, member)
    if redis.call('EXISTS', jobs_key) == 0 then
      forget_queue(k, base, queue_id, 600000, now)
    end
    redis.call('ZADD', cancelled_key, now, member)
    campaign_move(id, state, 'cancelled')
    cancelled = cancelled + 1
  end
  if not redis.call('ZSCORE', k.active, member) then
    redis.call('SREM', members, member)  -- nothing of it can come back into the campaign
  end
end
if unqueued > 0 then
  add_queued(k, base, now, -unqueued)
end
campaign_flush(k, base, now)
return { cancelled, page[1] }
