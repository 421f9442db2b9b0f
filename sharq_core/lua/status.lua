--[[ status: where one job is, read in one consistent step.

KEYS[1]  active zset   "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[2]  jobs hash     job_id -> record, of this queue
KEYS[3]  dead hash     "<queue_id>:<job_id>" -> JSON dead-letter record
KEYS[4]  done zset     "<queue_id>:<job_id>" -> time (ms) it was finished
ARGV[1]  "<queue_id>:<job_id>"
ARGV[2]  job_id

Returns { state, detail }: {'active', expiry ms}, {'queued', record},
{'dead', JSON record}, {'finished', ms} (within the dedupe window) or
{'unknown', ''}.
--]]
local active_key, jobs_key, dead_key, done_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local member, job_id = ARGV[1], ARGV[2]

local expiry = redis.call('ZSCORE', active_key, member)
if expiry then
  return { 'active', expiry }
end
local record = redis.call('HGET', jobs_key, job_id)
if record then
  return { 'queued', record }
end
local dead = redis.call('HGET', dead_key, member)
if dead then
  return { 'dead', dead }
end
local done = redis.call('ZSCORE', done_key, member)
if done then
  return { 'finished', done }
end
return { 'unknown', '' }
