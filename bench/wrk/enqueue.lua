-- POST jobs with fresh 36-character job_ids and 30-byte payloads over 100 queues.
-- Arguments: the queue type, an 8-character job_id prefix, and optionally a batch
-- size N: then each request is POST /enqueue/<type>/ with N jobs, else one job to
-- POST /enqueue/<type>/q<n>/.
local counter = 0

function init(args)
  queue_type, prefix, batch = args[1], args[2] or "00000000", tonumber(args[3])
  payload = string.rep("x", 28)
end

local function next_job()
  counter = counter + 1
  return string.format("%s-0000-0000-0000-%012d", prefix, counter), "q" .. (counter % 100)
end

function request()
  if not batch then
    local job_id, queue_id = next_job()
    local body = '{"job_id":"' .. job_id .. '","payload":"' .. payload .. '","interval":0}'
    return wrk.format("POST", "/enqueue/" .. queue_type .. "/" .. queue_id .. "/", nil, body)
  end
  local jobs = {}
  for i = 1, batch do
    local job_id, queue_id = next_job()
    jobs[i] = string.format('{"queue_id":"%s","job_id":"%s","payload":"%s","interval":0}', queue_id, job_id, payload)
  end
  return wrk.format("POST", "/enqueue/" .. queue_type .. "/", nil, '{"jobs":[' .. table.concat(jobs, ",") .. ']}')
end
