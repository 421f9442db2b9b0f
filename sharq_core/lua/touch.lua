--[[ touch: a worker's heartbeat; push an active job's expiry out.

KEYS[1]  active zset   "<queue_id>:<job_id>" -> expiry time (ms)
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  "<queue_id>:<job_id>"
ARGV[3]  job_expire_interval (ms)

Returns the new expiry time (ms), or -1 when the job is not active.
--]]
local active_key, member = KEYS[1], ARGV[2]
local now = now_ms(ARGV[1])
if not redis.call('ZSCORE', active_key, member) then
  return -1
end
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', active_key, expiry, member)
return expiry
