--[[ status: where one job is, read in one consistent step.

KEYS[1]  active zset     "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  jobs hash       job_id -> record, of this queue
KEYS[3]  dead hash       "<queue_id>:<job_id>" -> JSON dead-letter record
KEYS[4]  done zset       "<queue_id>:<job_id>" -> time (ms) it was finished
KEYS[5]  receipts hash   "<queue_id>:<job_id>" -> receipt of its current delivery
KEYS[6]  errors hash     "<queue_id>:<job_id>" -> the last error a worker reported
ARGV[1]  "<queue_id>:<job_id>"
ARGV[2]  job_id

Returns { state, detail, last_error or false }: {'active', expiry ms},
{'retrying', due ms} (failed with retry_after_ms), {'queued', record},
{'dead', JSON record}, {'finished', ms} (within the dedupe window) or
{'unknown', ''}.
--]]
local active_key, jobs_key, dead_key, done_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local member, job_id = ARGV[1], ARGV[2]
local last_error = redis.call('HGET', KEYS[6], member)

local expiry = redis.call('ZSCORE', active_key, member)
if expiry then
  local state = redis.call('HGET', KEYS[5], member) == 'retry' and 'retrying' or 'active'
  return { state, expiry, last_error }
end
local record = redis.call('HGET', jobs_key, job_id)
if record then
  return { 'queued', record, last_error }
end
local dead = redis.call('HGET', dead_key, member)
if dead then
  return { 'dead', dead, false }
end
local done = redis.call('ZSCORE', done_key, member)
if done then
  return { 'finished', done, false }
end
return { 'unknown', '', false }
