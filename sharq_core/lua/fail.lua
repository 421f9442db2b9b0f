--[[ fail: a worker reports that an active job failed.

The job goes back to the front of its queue at once, or after `retry_after` ms
(it waits as an active job whose expiry is its due time; the requeue pass puts
it back then), and that return counts against its requeue_limit like an
expiry. With no requeue left, or with `dead`, it goes to the dead letters with
the error as its reason. Either way it frees its concurrency slot at once. A
return that does not count (`counts` "0") is how a server hands back a job its
client never received (not counted as a failure either); with `throttle` (the upstream said 429) it does not
count either, and the whole queue is paused for `retry_after` ms.

KEYS[1..19]  the type's keys (see _helpers.lua)
KEYS[20]     jobs hash   job_id -> record, of this queue
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"
ARGV[3]  queue_id
ARGV[4]  job_id
ARGV[5]  receipt ("" = any delivery)
ARGV[6]  error text ("" = none given)
ARGV[7]  retry_after (ms; 0 = at once)
ARGV[8]  "1" to dead-letter it now
ARGV[9]  "1" if the return counts against requeue_limit
ARGV[10] how long (ms) to remember a dequeue time at least, once a queue is empty
ARGV[11] "1" to throttle: pause the queue for retry_after ms, the job back in front
ARGV[12] the real cost in units the receipt holder reports ("" = none; see
         charge_real_cost)

Returns 1 back in its queue (or ended: its campaign was cancelled), 4 waiting for
retry_after, 2 dead-lettered, 3 expired (its deadline passed: it is not handed
out again), 0 not active, -1 the receipt is not the current delivery's.
--]]
local k = type_keys()
local jobs_key = KEYS[TYPE_KEYS + 1]
local now = now_ms(ARGV[1])
local base, queue_id, job_id, receipt, error_text = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local retry_after, dead, counts, memory = tonumber(ARGV[7]), ARGV[8] == '1', ARGV[9] == '1', tonumber(ARGV[10])
local throttle = ARGV[11] == '1'
local member = queue_id .. ':' .. job_id

local allowed = check_delivery(k, jobs_key, member, job_id, receipt)
if allowed ~= 1 then
  return allowed
end
if ARGV[12] ~= '' then
  charge_real_cost(k, base, queue_id, redis.call('HGET', jobs_key, job_id), tonumber(ARGV[12]), now)
end
if error_text ~= '' then
  redis.call('HSET', k.errors, member, error_text)
end
if counts or throttle then
  redis.call('HINCRBY', k.totals, 'failed', 1)  -- a worker's report, not a hand-back
  count_rate(base, now, 'x', 1)
end
if throttle then
  local until_ms = now + retry_after
  local paused = tonumber(redis.call('HGET', k.paused, queue_id))
  if paused ~= -1 and (not paused or paused < until_ms) then
    redis.call('HSET', k.paused, queue_id, until_ms)
  end
  retry_after, counts = 0, false
end
local remaining = parse_record(redis.call('HGET', jobs_key, job_id))
if retry_after > 0 and not dead and not (counts and remaining == 0) then
  -- waits as active until due; "retry" is no delivery's receipt, so no worker can
  -- finish it meanwhile, status shows it as retrying, and it holds no slot
  redis.call('ZADD', k.active, now + retry_after, member)
  redis.call('HSET', k.receipts, member, 'retry')
  if free_slot(k, base, queue_id, now) then announce(base) end
  return 4
end
redis.call('ZREM', k.active, member)
local reason = error_text ~= '' and error_text or 'failed'
local outcome = put_back(k, base, queue_id, job_id, counts, dead, reason, now, memory)
campaign_flush(k, base, now)
if outcome == 'dead' or outcome == 'expired' then
  announce(base)  -- its slot is free
  return outcome == 'dead' and 2 or 3
end
if throttle then
  schedule_queue(k, base, queue_id, now)  -- listed again from the end of the pause
end
announce(base)
return 1
