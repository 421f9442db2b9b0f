-- POST /enqueue/<type>/ with 50 jobs per request over 100 queues. Arguments: the queue type, an 8-character job_id prefix.
local counter = 0

function init(args)
  queue_type = args[1]
  prefix = args[2] or "00000000"
end

function request()
  local jobs = {}
  for i = 1, 50 do
    counter = counter + 1
    jobs[i] = string.format('{"queue_id":"q%d","job_id":"%s-0000-0000-0000-%012d","payload":"%s","interval":0}',
      counter % 100, prefix, counter, string.rep("x", 28))
  end
  return wrk.format("POST", "/enqueue/" .. queue_type .. "/", nil, '{"jobs":[' .. table.concat(jobs, ",") .. ']}')
end
