--[[ campaign_forget: drop a campaign's record on one shard once it has been over
for campaign_retention_ms (the requeue pass asks, campaigns.py).

KEYS[1]  campaign hash
KEYS[2]  member set
KEYS[3]  campaigns zset   id -> ms started
KEYS[4]  ended zset       id -> ms it ended
KEYS[5]  notify zset      id -> on_done waiting to be enqueued
KEYS[6]  the type's jobs in campaigns by state (its counts leave them)
ARGV[1]  campaign id
ARGV[2]  cutoff: ended at or before this ms

Returns 1 forgotten, 0 kept (live again, or ended after the cutoff).
--]]
local ended = tonumber(redis.call('HGET', KEYS[1], 'ended'))
if redis.call('EXISTS', KEYS[1]) == 1 and not (ended and ended <= tonumber(ARGV[2])) then
  return 0
end
local counts = redis.call('HGETALL', KEYS[1])
for i = 1, #counts, 2 do
  local n = tonumber(counts[i + 1])
  if n and n ~= 0 and redis.call('HEXISTS', KEYS[6], counts[i]) == 1 then
    redis.call('HINCRBY', KEYS[6], counts[i], -n)
  end
end
redis.call('UNLINK', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
