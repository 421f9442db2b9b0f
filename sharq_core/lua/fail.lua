--[[ fail: a worker reports that an active job failed.

The job goes back to the front of its queue at once, or after `retry_after` ms
(it waits as an active job whose expiry is its due time; the requeue pass puts
it back then), and that return counts against its requeue_limit like an
expiry. With no requeue left, or with `dead`, it goes to the dead letters with
the error as its reason. A return that does not count (`counts` "0") is how a
server hands back a job its client never received.

KEYS[1]  active zset     "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  ready zset      queue_id -> next-ready time (ms)
KEYS[3]  queues hash     queue_id -> interval (ms)
KEYS[4]  dead hash       "<queue_id>:<job_id>" -> JSON dead-letter record
KEYS[5]  dead_at zset    "<queue_id>:<job_id>" -> time (ms) it died
KEYS[6]  receipts hash   "<queue_id>:<job_id>" -> receipt of its current delivery
KEYS[7]  errors hash     "<queue_id>:<job_id>" -> the last error a worker reported
KEYS[8]  jobs hash       job_id -> record, of this queue
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

Returns 1 back in its queue (or waiting for retry_after), 2 dead-lettered, 0 not
active, -1 the receipt is not the current delivery's.
--]]
local k = { ready = KEYS[2], queues = KEYS[3], dead = KEYS[4], dead_at = KEYS[5], receipts = KEYS[6], errors = KEYS[7] }
local active_key, jobs_key = KEYS[1], KEYS[8]
local now = now_ms(ARGV[1])
local base, queue_id, job_id, receipt, error_text = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local retry_after, dead, counts, memory = tonumber(ARGV[7]), ARGV[8] == '1', ARGV[9] == '1', tonumber(ARGV[10])
local member = queue_id .. ':' .. job_id

if not redis.call('ZSCORE', active_key, member) then
  return redis.call('HEXISTS', jobs_key, job_id) == 1 and receipt ~= '' and -1 or 0
end
if receipt ~= '' and redis.call('HGET', k.receipts, member) ~= receipt then
  return -1
end
if error_text ~= '' then
  redis.call('HSET', k.errors, member, error_text)
end
local remaining = parse_record(redis.call('HGET', jobs_key, job_id))
if retry_after > 0 and not dead and not (counts and remaining == 0) then
  -- waits as active until due; "retry" is no delivery's receipt, so no worker can
  -- finish it meanwhile, and status shows it as retrying
  redis.call('ZADD', active_key, now + retry_after, member)
  redis.call('HSET', k.receipts, member, 'retry')
  return 1
end
redis.call('ZREM', active_key, member)
local reason = error_text ~= '' and error_text or 'failed'
if put_back(k, base, queue_id, job_id, counts, dead, reason, now, memory) == 'dead' then
  return 2
end
announce(base)
return 1
