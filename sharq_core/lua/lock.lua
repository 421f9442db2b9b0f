--[[ lock: take a lock, or keep it if the caller holds it already.

A SET NX sent just before Redis hung can time out on the client and still run
when Redis resumes; the caller then holds the lock without knowing it. Asking
with the same token again recognises that, instead of waiting for the expiry.

KEYS[1]  lock key (a string holding the owner's token)
ARGV[1]  the caller's token
ARGV[2]  how long (ms) the lock lasts unless released

Returns 1 the caller holds the lock (taken or renewed), 0 someone else does.
--]]
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
