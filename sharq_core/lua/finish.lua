--[[ finish: acknowledge active jobs of one queue type; then, optionally, take more.

Each job is gone for good. With a receipt, only the delivery that receipt names
may finish it: a slow worker cannot acknowledge the job another worker now
holds. With a dedupe window, the job_id is remembered as finished for that long,
so an enqueue of it in the same queue is refused meanwhile (see enqueue). With
`next` > 0 the same call then hands out up to `next` jobs, as dequeue does: a
busy worker acknowledges a batch and takes the next in one round trip.
Each finish also feeds the type's measured job duration (see measure_duration).

KEYS[1..19]  the type's keys (see _helpers.lua)
then for job i (i = 1..n), one key at 19 + i: the jobs hash of its queue
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"
ARGV[3]  how long (ms) to remember a dequeue time at least, once a queue is empty
ARGV[4]  dedupe window (ms); 0 = do not remember finished jobs
ARGV[5]  job_expire_interval (ms), for `next`
ARGV[6]  next: how many jobs to hand out after finishing (0 = none)
ARGV[7]  receipt token for `next` (see dequeue.lua)
then for job i, four values at 7 + 4(i-1):
  +1 queue_id  +2 job_id  +3 receipt ("" = any delivery)
  +4 the real cost in units the receipt holder reports ("" = none; see
     charge_real_cost)

Returns { now, wait, n, code_1 .. code_n, then per job taken: queue_id, job_id,
record, queue_length, receipt }: code_i is 1 finished, 0 not active (never
dequeued, finished already, or expired), -1 the receipt is not the current
delivery's; `wait` is as in dequeue.lua.
--]]
local k = type_keys()
local now = now_ms(ARGV[1])
local base, memory, window = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local expire, next_count, token = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]

-- The type's job duration, hand-out to finish: a moving average (each job weighs
-- DURATION_WEIGHT) in the settings hash, what autoscale.lua multiplies rates by. A
-- job's hand-out is its expiry less job_expire_interval; a touch moves that, so a
-- job touched counts from its last touch.
local DURATION_WEIGHT = 0.1

local function measure_duration(k, expiries, expire, now)
  local total, n = 0, 0
  for _, expiry in ipairs(expiries) do
    if expiry then
      total, n = total + math.max(now - (tonumber(expiry) - expire), 0), n + 1
    end
  end
  if n == 0 then
    return
  end
  local mean, held = total / n, tonumber(redis.call('HGET', k.settings, 'duration'))
  if held then
    mean = held + (1 - (1 - DURATION_WEIGHT) ^ n) * (mean - held)
  end
  redis.call('HSET', k.settings, 'duration', string.format('%.1f', mean))
end

skip_absent_overrides(k)
local n = (#ARGV - 7) / 4
local result = { now, 0, n }
local finished, freed = 0, false
-- written once after the loop, each with every job finished: the active set,
-- receipts, errors (only when some job has one) and done set
local members, scored, acked, touched = {}, {}, {}, {}
for i = 1, n do
  local jobs_key = KEYS[TYPE_KEYS + i]
  local a = 7 + 4 * (i - 1)
  local queue_id, job_id, receipt, real_cost = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  local member = queue_id .. ':' .. job_id
  -- the same job twice in one batch: the second finds it finished
  local code = acked[member] and 0 or check_delivery(k, jobs_key, member, job_id, receipt)
  if code == 1 then
    acked[member] = true
    members[#members + 1] = member
    scored[#scored + 1] = now
    scored[#scored + 1] = member
    if any_campaigns(base) then
      local record = redis.call('HGET', jobs_key, job_id)
      campaign_move(record and campaign_in(record), 'active', 'finished')
    end
    if real_cost then
      charge_real_cost(k, base, queue_id, redis.call('HGET', jobs_key, job_id), real_cost, now)
    end
    redis.call('HDEL', jobs_key, job_id)
    freed = free_slot(k, base, queue_id, now) or freed
    touched[queue_id] = jobs_key
    finished = finished + 1
  end
  result[3 + i] = code
end
if finished > 0 then
  measure_duration(k, redis.call('ZMSCORE', k.active, unpack(members)), expire, now)
  redis.call('ZREM', k.active, unpack(members))
  redis.call('HDEL', k.receipts, unpack(members))
  if redis.call('EXISTS', k.errors) == 1 then
    redis.call('HDEL', k.errors, unpack(members))
  end
  for queue_id, jobs_key in pairs(touched) do
    if redis.call('EXISTS', jobs_key) == 0 then
      forget_queue(k, base, queue_id, memory, now)
    end
  end
  redis.call('HINCRBY', k.totals, 'finished', finished)
  count_rate(base, now, 'f', finished)
  if window > 0 then
    redis.call('ZADD', k.done, unpack(scored))
    -- the whole set goes once nothing was finished for a window (the requeue
    -- pass trims it while the type is busy)
    redis.call('PEXPIRE', k.done, window)
  end
  campaign_flush(k, base, now)
end
if freed then
  announce(base)  -- a queue at its concurrency cap can be served again
end
if next_count > 0 then
  local _, wait = take(k, base, now, expire, next_count, token, result, memory)
  result[2] = wait
end
return result
