--[[ clear: delete a queue's queued and delayed jobs (with purge_all, its active
jobs too), one bounded batch per call.

Without purge_all, active jobs stay (they may still be finished). Either way the
queue's rate state, limits and pause stay, so a refill still waits for the rate
limit. The caller repeats with the returned `next` until it is 'done':
  'queued'  (the first call) delete up to `batch` jobs from the head of a list
            (the highest priority's first);
  a cursor  once the list is empty: an HSCAN position in the jobs hash; delete up
            to about `batch` of the queue's delayed jobs (and active ones, with
            purge_all).

KEYS[1..19]  the type's keys (see _helpers.lua)
KEYS[20]     queue list    job_ids of priority 0 in FIFO order (see queue_list)
KEYS[21]     jobs hash     job_id -> record
ARGV[1]  queue_id
ARGV[2]  "1" to purge active jobs too, "0" for queued and delayed jobs only
ARGV[3]  batch: the most jobs to delete in this call
ARGV[4]  where to go on: 'queued' or an HSCAN cursor
ARGV[5]  how long (ms) to remember a dequeue time at least, once the queue is empty
ARGV[6]  now in ms, or "" to read Redis TIME
ARGV[7]  key base "<prefix>:{<queue_type>}"

Returns { deleted, next } with next 'queued', a cursor, or 'done'. A deleted job
of a campaign counts in it as cancelled.
--]]
local k = type_keys()
local jobs_key = KEYS[TYPE_KEYS + 2]
local queue_id, purge_all, batch, at, memory = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local now, base = now_ms(ARGV[6]), ARGV[7]

local deleted, next = 0, 'done'
if at == 'queued' then
  local priority = front_priority(base, queue_id)
  local list = queue_list(base, queue_id, priority)
  local queued = redis.call('LRANGE', list, 0, batch - 1)
  for _, job_id in ipairs(queued) do
    if any_campaigns(base) then
      local record = redis.call('HGET', jobs_key, job_id)
      campaign_move(record and campaign_in(record), 'queued', 'cancelled')
    end
    redis.call('HDEL', jobs_key, job_id)
    redis.call('HDEL', k.errors, queue_id .. ':' .. job_id)
  end
  deleted = #queued
  redis.call('LTRIM', list, #queued, -1)
  if priority > 0 and redis.call('EXISTS', list) == 0 then
    note_priority(base, queue_id, priority, false)
  end
  if #queued > 0 then  -- (Redis refuses "-0" as an integer)
    add_queued(k, base, now, -#queued)
  end
  local left = queue_length(base, queue_id)
  refresh_head(k, base, queue_id, left)
  if left > 0 then
    next = 'queued'
  else
    unlist_empty(k, base, queue_id)
    redis.call('ZREM', base .. ':held', queue_id)  -- nothing left for a quota to hold (note_held)
    if purge_all or redis.call('HEXISTS', k.nsched, queue_id) == 1 then next = '0' end
  end
else
  -- only the queue's queued jobs were deleted before, so what is left is delayed
  -- or active (or was enqueued meanwhile, and is skipped: it is in the list)
  local page = redis.call('HSCAN', jobs_key, at, 'COUNT', batch)
  local fields = page[2]
  for i = 1, #fields, 2 do
    local member = queue_id .. ':' .. fields[i]
    local gone = false
    local campaign = any_campaigns(base) and campaign_in(fields[i + 1])
    if redis.call('ZREM', k.scheduled, member) == 1 then
      campaign_move(campaign, 'scheduled', 'cancelled')
      if redis.call('HINCRBY', k.nsched, queue_id, -1) <= 0 then redis.call('HDEL', k.nsched, queue_id) end
      gone = true
    elseif purge_all and redis.call('ZREM', k.active, member) == 1 then
      if redis.call('HGET', k.receipts, member) ~= 'retry' and free_slot(k, base, queue_id, now) then
        announce(base)  -- a queue or the type was at its cap: a parked poll may go now
      end
      redis.call('HDEL', k.receipts, member)
      campaign_move(campaign, 'active', 'cancelled')
      gone = true
    end
    if gone then
      redis.call('HDEL', k.errors, member)
      redis.call('HDEL', jobs_key, fields[i])
      deleted = deleted + 1
    end
  end
  if page[1] ~= '0' then next = page[1] end
end
if next == 'done' and redis.call('EXISTS', jobs_key) == 0 and redis.call('HEXISTS', k.queues, queue_id) == 1 then
  forget_queue(k, base, queue_id, memory, now)
end
campaign_flush(k, base, now)
return { deleted, next }
