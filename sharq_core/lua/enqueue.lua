--[[ enqueue: add one or more jobs to queues of one queue type, atomically.

A job_id already known in its queue is refused, whatever state it is in: queued,
scheduled, active, dead-lettered (its dead letter must be retried or deleted
first, so no record is ever overwritten) or finished less than the dedupe window
ago (so a producer retrying after a 503 never queues a second copy). A job with
a due time later than now is scheduled: it joins the back of its queue when due.
A job with a priority (option p, 1-9) waits in its priority's list (see
queue_list): a take hands out every job of a higher priority first.
A job with a deadline (option x, see job_option) is indexed by it, so the
requeue pass finds it should it still wait then; a relative one ("x=+<ms>") is
stored as now + ms, and one not after now is refused.

KEYS[1..19]  the type's keys (see _helpers.lua)
then for job i (i = 1..n), two keys at 19 + 2(i-1):
  +1 queue list  job_ids of priority 0 in FIFO order (see queue_list)
  +2 jobs hash   job_id -> "<requeues_remaining>:<requeue_limit>[|<options>]:<enqueued_ms>:<payload>"
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"
ARGV[3]  dedupe window (ms); 0 = finished jobs are not remembered
ARGV[4]  the type's shard count the caller routed by (see layout_ok)
then for job i, seven values at 4 + 7(i-1):
  +1 queue_id  +2 job_id  +3 payload (JSON text)  +4 interval
  +5 limit field: "<requeue_limit>" or "<requeue_limit>|<options>" (see job_option)
  +6 max_queued_length ("" = unlimited)
  +7 due: "" now, "+<ms>" that long from now, or epoch ms; later than now, the
     job is scheduled until then

Returns { type_was_empty, code_1, ..., code_n } where type_was_empty is 1 when
the type held no queue before this call (Python then lists the type), or { -1 }
and nothing written when the shard count has changed (route again); code_i
is 1 queued, 2 scheduled, -1 already queued, -2 queue full, -3 already active,
-4 dead-lettered, -5 finished within the dedupe window, -6 already scheduled,
-7 its expire_at is not after now, -8 its campaign was cancelled. A job with a
campaign (option g) counts in it (see campaign_flush), opened at its first job,
and joins its member set "<base>:cgm:<id>" ("<q>:<j>"), which a cancel walks.
--]]
local k = type_keys()
local now = now_ms(ARGV[1])
local base, window = ARGV[2], tonumber(ARGV[3])

-- nothing in this call adds a dead letter: with none, no job_id needs a look
local any_dead = redis.call('EXISTS', k.dead) == 1

-- why a job_id that is not in its queue's jobs hash is refused, or nil
local function refused(member)
  if any_dead and redis.call('HEXISTS', k.dead, member) == 1 then
    return -4
  end
  local done = tonumber(redis.call('ZSCORE', k.done, member))
  if done and done > now - window then
    return -5
  end
  return nil
end

-- whether campaign `id` takes jobs: opened here at its first job, refused once
-- cancelled (read once per call)
local open_campaigns = {}
local function campaign_open(id)
  local open = open_campaigns[id]
  if open == nil then
    local key = base .. ':cg:' .. id
    if redis.call('HSETNX', key, 'started', now) == 1 then
      redis.call('HSET', key, 'total', 0, 'queued', 0, 'scheduled', 0, 'active', 0)
      redis.call('ZADD', base .. ':campaigns', now, id)
    end
    open = redis.call('HEXISTS', key, 'cancel') == 0
    open_campaigns[id] = open
  end
  return open
end

-- the code of a job_id its queue's jobs hash already holds
local function held(member)
  if redis.call('ZSCORE', k.active, member) then return -3 end
  if redis.call('ZSCORE', k.scheduled, member) then return -6 end
  return -1
end

if not layout_ok(k, ARGV[4]) then
  return { -1 }
end
skip_absent_overrides(k)
local result = { redis.call('EXISTS', k.queues) == 0 and 1 or 0 }
local added, queued, by_queue = 0, 0, {}
local n = (#ARGV - 4) / 7
for i = 1, n do
  local jobs_key = KEYS[TYPE_KEYS + 2 * i]
  local a = 4 + 7 * (i - 1)
  local queue_id, job_id, payload = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local interval, limit, max_length = tonumber(ARGV[a + 4]), ARGV[a + 5], tonumber(ARGV[a + 6])
  local deadline = deadline_of(limit)
  if deadline and string.find(limit, '|x=+', 1, true) then
    deadline = now + deadline  -- ttl_ms: from now
    limit = string.gsub(limit, '|x=[^|]*', '|x=' .. deadline)
  end
  local due_spec = ARGV[a + 7]
  local due = string.sub(due_spec, 1, 1) == '+' and now + tonumber(string.sub(due_spec, 2)) or tonumber(due_spec)
  local member = queue_id .. ':' .. job_id
  local campaign = string.find(limit, '|', 1, true) and job_option(limit, 'g')
  -- the record is written first (HSETNX: a job_id the hash holds is refused as
  -- it stands) and taken back should the job be refused for another reason
  local code
  if deadline and deadline <= now then
    code = -7
  elseif campaign and not campaign_open(campaign) then
    code = -8
  elseif redis.call('HSETNX', jobs_key, job_id,
      requeue_limit_of(limit) .. ':' .. limit .. ':' .. now .. ':' .. payload) == 0 then
    code = held(member)
  else
    code = refused(member)
    if not code and max_length then
      local length = queue_length(base, queue_id) + (tonumber(redis.call('HGET', k.nsched, queue_id)) or 0)
      if length >= max_length then code = -2 end
    end
    if code then
      redis.call('HDEL', jobs_key, job_id)
    end
  end
  if not code then
    note_cost(base, string.find(limit, '|c=', 1, true) and tonumber(job_option(limit, 'c')) or 1)
    local given = tonumber(redis.call('HGET', k.queues, queue_id))
    if given == nil then
      -- the queue is live again: its rate state stays (it has no expiry while
      -- the queue is in the queues hash, see forget_queue)
      redis.call('PERSIST', base .. ':last:' .. queue_id)
      redis.call('ZADD', k.known, 0, queue_id)
    end
    if given ~= interval then
      redis.call('HSET', k.queues, queue_id, interval)
      -- the new interval counts from the last dequeue: a queue that holds jobs
      -- is listed again for the head it holds (as POST /interval lists it), before
      -- this job, which may overtake it, goes in. A new queue holds none: its
      -- first job lists it below
      if given then
        schedule_queue(k, base, queue_id, now)
      end
    end
    if due and due > now then
      redis.call('ZADD', k.scheduled, due, member)
      redis.call('HINCRBY', k.nsched, queue_id, 1)
      code = 2
    else
      local first, overtook = queue_push(base, queue_id, job_id, priority_of(limit), false)
      if first then
        redis.call('ZADD', k.heads, now, queue_id)
      end
      if first or overtook then  -- overtook: it goes next, its cost says when
        schedule_queue(k, base, queue_id, now)
      end
      queued = queued + 1
      code = 1
    end
    if deadline then
      index_deadline(base, member, deadline, now)
    end
    if campaign then
      campaign_move(campaign, nil, 'total')
      campaign_move(campaign, nil, code == 2 and 'scheduled' or 'queued')
      redis.call('SADD', base .. ':cgm:' .. campaign, member)
    end
    by_queue[queue_id] = (by_queue[queue_id] or 0) + 1
    added = added + 1
  end
  result[i + 1] = code
end
if added > 0 then
  count_minute(base, now, 'e', added, by_queue)
  redis.call('HINCRBY', k.totals, 'enqueued', added)
  if queued > 0 then
    add_queued(k, base, now, queued)
  end
  announce(base)
end
campaign_flush(k, base, now)
return result
