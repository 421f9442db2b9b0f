--[[ unlock: release a lock only if the caller still owns it.

KEYS[1]  lock key (a string holding the owner's token)
ARGV[1]  the owner's token

Returns 1 released, 0 the lock had expired or belongs to someone else.
--]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
