--[[ dequeue: hand out up to `count` ready jobs of one queue type, fairest first.

Each pick takes the queue whose next-ready time is earliest (ZRANGE 0 0, so the
cost does not grow with the number of ready queues), pops its head job, marks it
active until now + expire under a fresh receipt, and moves the queue's
next-ready time by its rate (see take and schedule_queue in _helpers.lua).
Delayed jobs that are due join their queues first. A head whose deadline has
passed is never handed out: it expires (up to 10 per call, see take).

KEYS[1..19]  the type's keys (see _helpers.lua)
ARGV[1]  now in ms, or "" to read Redis TIME
ARGV[2]  key base "<prefix>:{<queue_type>}"
ARGV[3]  job_expire_interval (ms)
ARGV[4]  count: the most jobs to hand out
ARGV[5]  receipt token: job n of this call gets receipt "<token>.<n>"
ARGV[6]  how long (ms) to remember a dequeue time at least, once a queue is empty
         (a queue whose last job expires here)

Returns { now, wait, then per job: queue_id, job_id, record, queue_length, receipt }.
`wait` is 0 when a job was handed out; otherwise the ms until the earliest queued
or delayed job is due, or -1 when there is none (or the type is paused until
resumed). `record` is the job's "<requeues_remaining>:<requeue_limit>:<enqueued_ms>:<payload>".
--]]
local k = type_keys()
local now = now_ms(ARGV[1])
local result = { now, 0 }
skip_absent_overrides(k)
local _, wait = take(k, ARGV[2], now, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], result, tonumber(ARGV[6]))
result[2] = wait
return result
