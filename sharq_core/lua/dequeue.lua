--[[ dequeue: hand out up to `count` ready jobs of one queue type, fairest first.

Each pick takes the queue whose next-ready time is earliest (ZRANGE 0 0, so the
cost does not grow with the number of ready queues), pops its head job, marks it
active until now + expire and pushes the queue's next-ready time out by its
interval, so a queue is never served twice within its interval.

KEYS[1]  ready zset    queue_id -> next-ready time (ms)
KEYS[2]  active zset   "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[3]  queues hash   queue_id -> interval (ms)
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"; the picked queue's keys are
         base..":q:"..id (list), base..":j:"..id (jobs), base..":last:"..id
ARGV[3]  job_expire_interval (ms)
ARGV[4]  count: the most jobs to hand out

Returns { now, wait, then per job: queue_id, job_id, record, queue_length }.
`wait` is 0 when a job was handed out; otherwise the ms until the earliest queued
job is due, or -1 when the type holds no queued job. `record` is the job's
"<requeues_remaining>:<requeue_limit>:<payload>".
--]]
local ready_key, active_key, queues_key = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms(ARGV[1])
local base, expire, count = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

local stats_key = base .. ':stats:' .. (now - (now % 60000))
local result = { now, 0 }
local served = 0
while served < count do
  local head = redis.call('ZRANGE', ready_key, 0, 0, 'WITHSCORES')
  if #head == 0 then
    if served == 0 then result[2] = -1 end
    break
  end
  local queue_id, due = head[1], tonumber(head[2])
  if due > now then
    if served == 0 then result[2] = due - now end
    break
  end
  local queue_key = base .. ':q:' .. queue_id
  local job_id = redis.call('LPOP', queue_key)
  if job_id then
    local record = redis.call('HGET', base .. ':j:' .. queue_id, job_id)
    local interval = tonumber(redis.call('HGET', queues_key, queue_id)) or 0
    local length = redis.call('LLEN', queue_key)
    redis.call('ZADD', active_key, now + expire, queue_id .. ':' .. job_id)
    if length > 0 then
      redis.call('ZADD', ready_key, now + interval, queue_id)
    else
      redis.call('ZREM', ready_key, queue_id)
    end
    -- kept without expiry while the queue holds jobs (see forget_queue)
    redis.call('SET', base .. ':last:' .. queue_id, now)
    redis.call('HINCRBY', stats_key, 'd:' .. queue_id, 1)
    result[#result + 1] = queue_id
    result[#result + 1] = job_id
    result[#result + 1] = record
    result[#result + 1] = length
    served = served + 1
  else
    redis.call('ZREM', ready_key, queue_id)
  end
end
-- the first count of the minute sets the expiry (see enqueue.lua)
if served > 0 and redis.call('HINCRBY', stats_key, 'd', served) == served then
  redis.call('PEXPIRE', stats_key, 660000 - (now % 60000))
end
return result
