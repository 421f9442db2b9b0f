--[[ dead_delete: drop one dead-lettered job for good.

KEYS[1]  dead hash     "<queue_id>:<job_id>" -> JSON dead-letter record
KEYS[2]  dead_at zset  "<queue_id>:<job_id>" -> time (ms) it died
ARGV[1]  "<queue_id>:<job_id>"

Returns 1 deleted, 0 no such dead letter.
--]]
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
