-- POST /enqueue/<type>/q<n>/: one job per request, a fresh 36-character job_id
-- each time, spread over 100 queues. Arguments: the queue type, an 8-character job_id prefix.
local counter = 0

function init(args)
  queue_type = args[1]
  prefix = args[2] or "00000000"
end

function request()
  counter = counter + 1
  local job_id = string.format("%s-0000-0000-0000-%012d", prefix, counter)
  local body = '{"job_id":"' .. job_id .. '","payload":"' .. string.rep("x", 28) .. '","interval":0}'
  return wrk.format("POST", "/enqueue/" .. queue_type .. "/q" .. (counter % 100) .. "/", nil, body)
end
