--[[ touch: a worker's heartbeat; push an active job's expiry out.

Answers a stale receipt as finish and fail do (check_delivery in _helpers.lua):
a receipt that names a delivery no longer under way is -2, not "not active".

KEYS[1]  active zset     "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  receipts hash   "<queue_id>:<job_id>" -> receipt of its current delivery
KEYS[3]  jobs hash       job_id -> record, of this queue
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  "<queue_id>:<job_id>"
ARGV[3]  job_expire_interval (ms)
ARGV[4]  receipt ("" = any delivery)
ARGV[5]  job_id

Returns the new expiry time (ms), -1 when the job is not active (or waits to be
retried), -2 when the receipt is not the current delivery's.
--]]
local k = { active = KEYS[1], receipts = KEYS[2] }
local member = ARGV[2]
local now = now_ms(ARGV[1])
local allowed = check_delivery(k, KEYS[3], member, ARGV[5], ARGV[4])
if allowed ~= 1 then
  return allowed - 1
end
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', k.active, expiry, member)
return expiry
