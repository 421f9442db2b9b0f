--[[ touch: a worker's heartbeat; push an active job's expiry out.

KEYS[1]  active zset     "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  receipts hash   "<queue_id>:<job_id>" -> receipt of its current delivery
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  "<queue_id>:<job_id>"
ARGV[3]  job_expire_interval (ms)
ARGV[4]  receipt ("" = any delivery)

Returns the new expiry time (ms), -1 when the job is not active (or waits to be
retried), -2 when the receipt is not the current delivery's.
--]]
local active_key, receipts_key, member, receipt = KEYS[1], KEYS[2], ARGV[2], ARGV[4]
local now = now_ms(ARGV[1])
if not redis.call('ZSCORE', active_key, member) then
  return -1
end
local current = redis.call('HGET', receipts_key, member)
if current == 'retry' then
  return -1
end
if receipt ~= '' and current ~= receipt then
  return -2
end
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', active_key, expiry, member)
return expiry
