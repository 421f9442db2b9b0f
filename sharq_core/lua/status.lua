--[[ status: where one job is, read in one consistent step.

KEYS[1..19]  the type's keys (see _helpers.lua)
KEYS[20]     jobs hash   job_id -> record, of this queue
KEYS[21]     cancelled   zset "<q>:<j>" -> ms its campaign's cancel removed it
ARGV[1]  "<queue_id>:<job_id>"
ARGV[2]  job_id

Returns { state, detail, last_error or false, record or false }: {'active', expiry ms},
{'retrying', due ms} (failed with retry_after_ms), {'scheduled', due ms},
{'queued', record}, {'dead', JSON record}, {'finished', ms} (within the dedupe
window), {'cancelled', ms} (its campaign was cancelled, within the dedupe
window) or {'unknown', ''}; the record (while its queue holds it: queued,
scheduled, active or retrying) tells its options, such as its cost and priority.
--]]
local k = type_keys()
local member, job_id = ARGV[1], ARGV[2]
local last_error = redis.call('HGET', k.errors, member)
local record = redis.call('HGET', KEYS[TYPE_KEYS + 1], job_id) or false

local expiry = redis.call('ZSCORE', k.active, member)
if expiry then
  local state = redis.call('HGET', k.receipts, member) == 'retry' and 'retrying' or 'active'
  return { state, expiry, last_error, record }
end
local due = redis.call('ZSCORE', k.scheduled, member)
if due then
  return { 'scheduled', due, last_error, record }
end
if record then
  return { 'queued', record, last_error, record }
end
local dead = redis.call('HGET', k.dead, member)
if dead then
  return { 'dead', dead, false, false }
end
local done = redis.call('ZSCORE', k.done, member)
if done then
  return { 'finished', done, false, false }
end
local cancelled = redis.call('ZSCORE', KEYS[TYPE_KEYS + 2], member)
if cancelled then
  return { 'cancelled', cancelled, false, false }
end
return { 'unknown', '', false, false }
