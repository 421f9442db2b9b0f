-- A worker's cycle: GET /dequeue/<type>/, then POST /finish/ for the job it got.
-- Prints "cycles N": the finishes that succeeded. Argument: the queue type.
local finishes = {}
cycles = 0

function init(args)
  queue_type = args[1]
end

function request()
  local path = table.remove(finishes)
  if path then
    return wrk.format("POST", path)
  end
  return wrk.format("GET", "/dequeue/" .. queue_type .. "/")
end

function response(status, headers, body)
  if status ~= 200 then
    return
  end
  local queue_id, job_id = body:match('"queue_id":"([^"]+)","job_id":"([^"]+)"')
  if queue_id then
    finishes[#finishes + 1] = "/finish/" .. queue_type .. "/" .. queue_id .. "/" .. job_id .. "/"
  else
    cycles = cycles + 1
  end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("cycles")
  end
  io.write(string.format("cycles %d\n", total))
end
