--[[ dequeue: hand out up to `count` ready jobs of one queue type, fairest first.

Each pick takes the queue whose next-ready time is earliest (ZRANGE 0 0, so the
cost does not grow with the number of ready queues), pops its head job, marks it
active until now + expire under a fresh receipt, and pushes the queue's
next-ready time out by its interval, so a queue is never served twice within its
interval (see take in _helpers.lua).

KEYS[1]  ready zset     queue_id -> next-ready time (ms)
KEYS[2]  active zset    "<queue_id>:<job_id>" -> expiry time (ms)
KEYS[3]  queues hash    queue_id -> interval (ms)
KEYS[4]  receipts hash  "<queue_id>:<job_id>" -> receipt of its current delivery
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"; the picked queue's keys are
         base..":q:"..id (list), base..":j:"..id (jobs), base..":last:"..id
ARGV[3]  job_expire_interval (ms)
ARGV[4]  count: the most jobs to hand out
ARGV[5]  receipt token: job n of this call gets receipt "<token>.<n>"

Returns { now, wait, then per job: queue_id, job_id, record, queue_length, receipt }.
`wait` is 0 when a job was handed out; otherwise the ms until the earliest queued
job is due, or -1 when the type holds no queued job. `record` is the job's
"<requeues_remaining>:<requeue_limit>:<payload>".
--]]
local now = now_ms(ARGV[1])
local result = { now, 0 }
local _, wait = take(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], now, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], result)
result[2] = wait
return result
