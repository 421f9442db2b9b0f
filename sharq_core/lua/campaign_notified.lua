--[[ campaign_notified: a campaign's on_done job was enqueued (or was found
enqueued already): note it, so it is never enqueued again.

KEYS[1]  campaign hash
KEYS[2]  notify zset
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  campaign id

Returns 1.
--]]
redis.call('HSET', KEYS[1], 'notified', now_ms(ARGV[1]))
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
