-- Prepended to every script by scripts.py (once, at load): the helpers they share.
--
-- Scripts that work on a queue type take the type's keys first, always in this
-- order (keys.py `type_keys`), and read them with type_keys():
--   KEYS[1]  ready        zset    queue_id -> ms its next job may be dequeued
--   KEYS[2]  active       zset    "<queue_id>:<job_id>" -> ms the delivery expires
--   KEYS[3]  queues       hash    queue_id -> interval (ms) the last enqueue gave
--   KEYS[4]  receipts     hash    "<q>:<j>" -> receipt of the current delivery ('retry': none)
--   KEYS[5]  errors       hash    "<q>:<j>" -> the last error a worker reported
--   KEYS[6]  dead         hash    "<q>:<j>" -> JSON dead-letter record
--   KEYS[7]  dead_at      zset    "<q>:<j>" -> ms it died
--   KEYS[8]  done         zset    "<q>:<j>" -> ms it was finished (dedupe window)
--   KEYS[9]  limits       hash    queue_id -> "<interval>|<burst>|<max_active>[|<weight>]" override
--   KEYS[10] nactive      hash    queue_id -> jobs of the queue holding a slot (active)
--   KEYS[11] paused       hash    queue_id -> ms the pause ends (-1: until resumed)
--   KEYS[12] type_paused  string  ms the type's pause ends (-1: until resumed)
--   KEYS[13] scheduled    zset    "<q>:<j>" -> ms the delayed job is due
--   KEYS[14] nsched       hash    queue_id -> delayed jobs of the queue
--   KEYS[15] known        zset    queue_id -> 0, queues holding jobs or limits (id order)
--   KEYS[16] totals       hash    counters since the type began: enqueued, dequeued,
--                                 finished, failed, requeued, dead; queued (jobs in lists);
--                                 taken_at (ms of the last dequeue)
--   KEYS[17] heads        zset    queue_id -> ms its head (oldest) queued job was enqueued
--   KEYS[18] settings     hash    shards (absent: 1); the type-wide interval, burst and
--                                 max_active; last (the type's rate state), active (slots);
--                                 duration (ms, the measured job duration) and the
--                                 demand:* sums of the demand records (see count_demand)
--   KEYS[19] demand       hash    queue_id -> what the backlogged queue adds to the demand
--                                 sums (see count_demand)
-- A queue's own keys are "<base>:q:<id>" (list), ":j:<id>" (jobs) and ":last:<id>"
-- (rate state), base being "<prefix>:{<queue_type>}"; "<base>:deadlines" indexes
-- the jobs enqueued with a deadline (see deadlines_key), "<base>:turns" holds what
-- is left of each queue's turn (see weighted_place).
local TYPE_KEYS = 19

local function type_keys()
  return {
    ready = KEYS[1], active = KEYS[2], queues = KEYS[3], receipts = KEYS[4], errors = KEYS[5],
    dead = KEYS[6], dead_at = KEYS[7], done = KEYS[8], limits = KEYS[9], nactive = KEYS[10],
    paused = KEYS[11], type_paused = KEYS[12], scheduled = KEYS[13], nsched = KEYS[14], known = KEYS[15],
    totals = KEYS[16], heads = KEYS[17], settings = KEYS[18], demand = KEYS[19],
  }
end

-- The time in ms: the caller's explicit clock when ARGV gives one, else Redis
-- TIME, so every server process agrees on one clock whatever its host's.
local function now_ms(given)
  local now = tonumber(given)
  if now then
    return now
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The four fields of a limits override "<interval>|<burst>|<max_active>[|<weight>]"
-- as strings ("" where unset); all "" for no override. The weight is written only
-- when set, so an override without one reads as before weights.
local function parse_limits(override)
  return string.match(override or '||', '^([^|]*)|([^|]*)|([^|]*)|?([^|]*)$')
end

-- true once a script has found that the type has no limits override at all
-- (see skip_absent_overrides): the per-queue lookup is then skipped.
local no_overrides = false

-- For scripts that never write the limits hash (enqueue, dequeue, finish): one
-- HLEN per call spares a lookup per job while no queue of the type has an override.
local function skip_absent_overrides(k)
  no_overrides = redis.call('HLEN', k.limits) == 0
end

-- A queue's limits override as four strings ("" where unset).
local function override(k, queue_id)
  if no_overrides then
    return '', '', '', ''
  end
  return parse_limits(redis.call('HGET', k.limits, queue_id))
end

-- A queue's effective limits: interval, burst, max_active (nil: no cap), weight.
-- An override (PUT /limits) wins over the interval the last enqueue gave.
local function queue_limits(k, queue_id)
  local interval = tonumber(redis.call('HGET', k.queues, queue_id)) or 0
  local i, b, m, w = override(k, queue_id)
  return tonumber(i) or interval, tonumber(b) or 1, tonumber(m), tonumber(w) or 1
end

-- What each queue has left of its turn, less its quantum (see weighted_place):
-- queue_id -> units, absent for 0 (a new turn of a whole quantum).
local function turns_key(base)
  return base .. ':turns'
end

-- The largest cost of a job ever queued on this shard (the settings' "cost",
-- raised by note_cost): the unit of a turn, so that every turn serves at least
-- one job; 1 until known. The smallest (the settings' "least", nil until a job
-- is queued): while every job costs the same, a turn of weight 1 is exactly one
-- job, as with jobs of one unit, and needs no state. And whether any queue of
-- the shard was ever given a weight over 1 (the settings' "weighted", set by
-- limits.lua). They ride on the settings read most calls make anyway
-- (layout_ok, type_limits); turn_counted reads them for a call that made none.
local largest_cost = 1
local least_cost = nil
local weighted = false
local turns_read = false

local function read_turn_settings(cost, weights, least)
  largest_cost = tonumber(cost) or 1
  least_cost = tonumber(least)
  weighted = weights and true or false
  turns_read = true
end

-- Whether jobs of different costs were queued on the shard (a "cost" written
-- before "least" existed counts as varying).
local function costs_vary()
  return largest_cost > (least_cost or 1)
end

-- Whether a queue of `weight` counts its turns: over 1, or among jobs of
-- different costs. Otherwise each turn is one job and nothing is stored. Reads
-- the settings for a call that has not (one HMGET at most per call).
local function turn_counted(k, weight)
  if not turns_read then
    read_turn_settings(unpack(redis.call('HMGET', k.settings, 'cost', 'weighted', 'least')))
  end
  return weight > 1 or costs_vary()
end

-- Whether any queue of the shard may hold a turn (see turn_take).
local function turns_kept(k)
  return turn_counted(k, 1) or weighted
end

-- A weighted fair share in units, by deficit round robin. Each turn gives a
-- queue `weight` x largest_cost units; "<base>:turns" holds what is left of it
-- less that quantum (absent: 0). Served, a queue keeps its place while what is
-- left covers its next job, then goes to the back carrying what is left (less
-- than one job) to its next turn. While queues stay backlogged each gets
-- weight / sum(weights) of the units handed out, within one largest cost per
-- turn. With weight 1 and jobs of one unit a turn is one job: the queue goes
-- straight to the back as it always has, and nothing is read or stored; so
-- with weight 1 and every job of one cost (turn_counted).
--
-- What is left of a queue's turn once a job of `cost` is taken from it: nil when
-- the turn is one job of one unit; else { units left, whether the turns hash now
-- holds the queue, whether it counted this job already }. A queue of weight over
-- 1 counts as it goes (one HINCRBY: its turns run to several jobs); one of weight
-- 1, whose turn of the largest cost is mostly one job, is only read (one HGET)
-- and written if its turn goes on or leaves something over. Below 0 the turn
-- cannot cover the job: one costlier than what was left came to the queue's
-- front in the middle of its turn (a higher priority, a requeue, the head
-- before it expiring). The turn then ends without it, carrying what was left,
-- and the job waits for the queue's next turn, which always covers it (a whole
-- quantum and the carry, at least largest_cost): no turn hands out more than it
-- holds.
local function turn_take(k, base, queue_id, weight, cost)
  if not turn_counted(k, weight) then
    return nil
  end
  local quantum = weight * largest_cost
  local key, left, holds, counted = turns_key(base), nil, true, weight > 1
  if counted then
    left = redis.call('HINCRBY', key, queue_id, -cost) + quantum
  else
    local stored = tonumber(redis.call('HGET', key, queue_id))
    left, holds = (stored or 0) + quantum - cost, stored ~= nil
  end
  if left < 0 then
    redis.call('HSET', key, queue_id, left + cost)  -- the carry: what it had left
  end
  return { left, holds, counted }
end

-- Where a queue that was just served and stays ready is listed again, given its
-- turn (turn_take; nil: not counted): at its place `listed` (its score when it
-- was picked, so at most now) while what is left covers its next job of
-- `next_cost`, else at the back, max(due, now), carrying what is left. A queue
-- that is not counted goes straight to the back as it always has. A queue's rate
-- still wins: one whose rate holds its next job (due > now) is listed at due,
-- its turn going on when it comes back.
local function weighted_place(base, queue_id, weight, turn, next_cost, due, listed, now)
  if turn then
    local left, holds, counted = unpack(turn)
    if next_cost <= left then
      if not counted then redis.call('HSET', turns_key(base), queue_id, left - weight * largest_cost) end
      return due > now and due or listed
    end
    if left ~= 0 then
      redis.call('HSET', turns_key(base), queue_id, left)  -- the next turn: a quantum and this
    elseif holds then
      redis.call('HDEL', turns_key(base), queue_id)
    end
  end
  return math.max(due, now)
end

-- A served queue leaves the ready set (empty or at its cap): its turn (turn_take)
-- ends, nothing carried.
local function end_round(base, queue_id, turn)
  if turn and turn[2] then
    redis.call('HDEL', turns_key(base), queue_id)
  end
end

-- Take a queue out of the ready set for anything but a take serving it (its last
-- jobs expired or were cleared, a pause until resumed, a cap reached by a lowered
-- limit): its turn ends there too, so that it starts a whole one when listed
-- again (a turn left half used would cut its next one short, whenever that is).
-- One HDEL when it was listed on a shard that keeps turns; nothing otherwise.
local function unlist(k, base, queue_id)
  if redis.call('ZREM', k.ready, queue_id) == 1 and turns_kept(k) then
    redis.call('HDEL', turns_key(base), queue_id)
  end
end

-- The rate is a generic cell rate algorithm counting units: one stored time L per
-- queue (and per type), the theoretical arrival time less one interval, so that
-- with burst 1 and jobs of one unit it is simply the last dequeue. A job of `cost`
-- units conforms from L + interval - (burst - min(cost, burst)) x interval on (one
-- costing more than the burst once the state is fully idle, L + interval), and
-- moves L to max(L + interval, now) + (cost - 1) x interval: c x interval of time.
local function rate_due(last, interval, burst, cost)
  return last + interval - (burst - math.min(cost, burst)) * interval
end

local function rate_after(last, interval, cost, now)
  return (last and math.max(last + interval, now) or now) + (cost - 1) * interval
end

-- Quotas over fixed windows (issue 25.2): a spec "<limit>/<window_ms>/<offset_ms>"
-- per window, ";" between (at most 3), in the hash "<base>:quotas" per queue and
-- in the settings' "quotas" for the type. Units handed out count in the hash
-- "<base>:used", field "<owner>/<window_ms>/<offset_ms>@<window start>" (owner:
-- the queue_id, or "*" for the type) -> units, so a count is one HINCRBY and a
-- window that began since reads 0; "<owner>/<window_ms>/<offset_ms>" -> the start
-- of the window counted last, whose field the first count of the next one drops.
-- Windows are aligned to the epoch plus offset_ms; a type spread over N shards
-- gives each shard floor(limit / N) (at least 1) of its type-wide quotas.
--
-- A take meets the same spec on many queues (every tenant's day quota): each spec
-- is parsed once per call, and its windows, shared, keep the text their fields
-- are named by (`name`) and that of the start they last met (`at`), so naming a
-- window's field costs no number formatting per job.
local parsed_quotas = {}

local function quota_windows(spec, shards)
  if not spec or spec == '' then
    return nil
  end
  local memo = shards and (spec .. '#' .. shards) or spec
  local windows = parsed_quotas[memo]
  if windows == nil then
    windows = {}
    for limit, window, offset in string.gmatch(spec, '(%d+)/(%d+)/(-?%d+)') do
      windows[#windows + 1] = {
        limit = math.max(1, math.floor(tonumber(limit) / (shards or 1))),
        window = tonumber(window), offset = tonumber(offset), name = '/' .. window .. '/' .. offset }
    end
    windows = #windows > 0 and windows or false
    parsed_quotas[memo] = windows
  end
  return windows or nil
end

-- The start of the window holding `now` (Lua's % is never negative here).
local function window_start(now, q)
  return now - ((now - q.offset) % q.window)
end

local function quota_window_field(owner, q)
  return owner .. q.name
end

-- The field counting `owner`'s units in the window of `q` that began at `start`.
local function quota_count_field(owner, q, start)
  if q.start ~= start then
    q.start, q.at = start, '@' .. start
  end
  return owner .. q.name .. q.at
end

-- Units counted in each window this script read or wrote, by field: nothing else
-- writes "<base>:used" while it runs, so a window is read once.
local quota_seen = {}

local function quota_used(base, owner, q, start)
  local field = quota_count_field(owner, q, start)
  local used = quota_seen[field] or tonumber(redis.call('HGET', base .. ':used', field)) or 0
  quota_seen[field] = used
  return used
end

-- Count `units` (below 0: take them back) in the window of `q` that began at
-- `start`; the units it holds now. Its first count drops the last window's field;
-- a count in a window before the last (a clock stepped back: a failover to a
-- replica whose clock lags) leaves the last one's count and start as they are
-- (its own field then stays: one per step back, where the other way round each
-- step back lost a window's count).
local function quota_add(base, owner, q, start, units)
  local field, key = quota_count_field(owner, q, start), base .. ':used'
  local used = redis.call('HINCRBY', key, field, units)
  quota_seen[field] = used
  if used == units and units > 0 then
    local window = quota_window_field(owner, q)
    local last = tonumber(redis.call('HGET', key, window))
    if not last or last < start then
      if last then redis.call('HDEL', key, window .. '@' .. last) end
      redis.call('HSET', key, window, start)
    end
  end
  return used
end

-- nil when every window has `cost` units left now; else when the last full one resets.
local function quota_hold(base, owner, windows, cost, now)
  local until_ms
  for _, q in ipairs(windows) do
    local start = window_start(now, q)
    if quota_used(base, owner, q, start) + cost > q.limit then
      until_ms = math.max(until_ms or 0, start + q.window)
    end
  end
  return until_ms
end

-- `cost` units went out (or were reported, or, below 0, did not go after all):
-- counted in every window of now.
local function quota_count(base, owner, windows, cost, now)
  for _, q in ipairs(windows) do
    quota_add(base, owner, q, window_start(now, q), cost)
  end
end

-- A job of `cost` units would go now: counted in every window (one HINCRBY each,
-- no read first) and nil, or, when a window has less than `cost` left, counted in
-- none and when the last full one resets (quota_hold's answer).
local function quota_take(base, owner, windows, cost, now)
  local until_ms
  for _, q in ipairs(windows) do
    local start = window_start(now, q)
    if quota_add(base, owner, q, start, cost) > q.limit then
      until_ms = math.max(until_ms or 0, start + q.window)
    end
  end
  if until_ms then
    quota_count(base, owner, windows, -cost, now)
  end
  return until_ms
end

-- A queue its quota holds until `until_ms` is listed in "<base>:held" (queue_id
-- -> until), so stats count held queues with one ZCOUNT: holds already over are
-- dropped as a new one is noted (no key expiry: a caller's clock may not be
-- Redis's), and limits.lua drops a queue's entry when its quotas change, so the
-- key lasts only while some queue has quotas.
local function note_held(base, queue_id, until_ms, now)
  local key = base .. ':held'
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, until_ms, queue_id)
end

-- A queue's own quotas, or nil; `any` says whether the type has any at all (one
-- EXISTS per call spares a lookup per queue when none has).
local function queue_quotas(base, queue_id, any)
  return any and quota_windows(redis.call('HGET', base .. ':quotas', queue_id)) or nil
end

-- Whether this shard's queues hold jobs above priority 0 (see queue_priorities):
-- nil until known. The settings' "prio" field says a job above priority 0 was
-- ever queued on the shard (set by note_priority, never removed); the reads of
-- the settings every call makes anyway (layout_ok, type_limits) also read it, so a
-- type that never had one learns it has none at no cost, where EXISTS of the
-- priorities hash cost each enqueue and take one command more.
local priorities_here = nil
local priorities_flagged = false

local function read_settings_flags(flag, cost, weights, least)
  priorities_flagged = flag and true or false
  if not flag and priorities_here == nil then
    priorities_here = false
  end
  read_turn_settings(cost, weights, least)
end

-- A job of `cost` units is queued on the shard: the unit of a turn covers it,
-- and turns count once costs vary (one HSET the first time either changes).
local function note_cost(base, cost)
  if cost > largest_cost then
    redis.call('HSET', base .. ':settings', 'cost', cost)
    largest_cost = cost
  end
  if cost < (least_cost or math.huge) then
    redis.call('HSET', base .. ':settings', 'least', cost)
    least_cost = cost
  end
end

-- Whether the caller routed by the type's current shard count `expected` (a
-- server's cached layout may be stale for a moment after PUT /types) and no
-- change of it is under way (layout.lua): a script that would create per-queue
-- state refuses when not, and the caller retries.
local function layout_ok(k, expected)
  local stored = redis.call('HMGET', k.settings, 'shards', 'sealed', 'prio', 'cost', 'weighted', 'least')
  read_settings_flags(stored[3], stored[4], stored[5], stored[6])
  return (tonumber(stored[1]) or 1) == tonumber(expected) and not stored[2]  -- sealed: a change is under way
end

-- The type-wide limits (PUT /limits/<type>/) as this shard applies them, or nil
-- when the type has none. A type spread over N shards splits them evenly: each
-- shard allows one job per N x interval, floor(burst / N) back to back and
-- floor(max_active / N) at once (at least 1 each), so over any window the shards
-- together stay within the type's bound.
-- Read once per call (no script that uses them changes them): false when none.
-- The same read tells whether any queue of the shard has quotas (limits.lua keeps
-- their count in the settings' "queue_quotas"), sparing a take a lookup per queue.
local type_wide_read = nil
local queue_quotas_exist = false

local function type_limits(k)
  if type_wide_read ~= nil then
    return type_wide_read or nil
  end
  local s = redis.call('HMGET', k.settings, 'interval', 'burst', 'max_active', 'shards', 'quotas', 'queue_quotas', 'prio',
    'cost', 'weighted', 'least')
  local interval, cap = tonumber(s[1]), tonumber(s[3])
  read_settings_flags(s[7], s[8], s[9], s[10])
  queue_quotas_exist = s[6] and true or false
  type_wide_read = false
  if interval or cap or s[5] then
    local shards = tonumber(s[4]) or 1
    type_wide_read = {
      interval = interval and interval * shards,
      burst = math.max(1, math.floor((tonumber(s[2]) or 1) / shards)),
      cap = cap and math.max(1, math.floor(cap / shards)),
      quotas = quota_windows(s[5] or nil, shards),
    }
  end
  return type_wide_read or nil
end

-- 0 when the type-wide limits let one more job of `cost` units go now; else the
-- ms until they do (-1: until a slot of the type frees).
local function type_gate(k, base, limits, now, cost)
  if limits.cap and (tonumber(redis.call('HGET', k.settings, 'active')) or 0) >= limits.cap then
    return -1
  end
  local held = limits.quotas and quota_hold(base, '*', limits.quotas, cost, now)
  if held then
    return held - now
  end
  if limits.interval then
    local last = tonumber(redis.call('HGET', k.settings, 'last'))
    local due = last and rate_due(last, limits.interval, limits.burst, cost)
    if due and due > now then
      return due - now
    end
  end
  return 0
end

-- A job of `cost` units went out under the type-wide limits: one more slot held,
-- the type's rate state moved on as a queue's is.
local function type_took(k, base, limits, now, cost)
  if limits.quotas then
    quota_count(base, '*', limits.quotas, cost, now)
  end
  if limits.cap then
    redis.call('HINCRBY', k.settings, 'active', 1)
  end
  if limits.interval then
    local last = tonumber(redis.call('HGET', k.settings, 'last'))
    redis.call('HSET', k.settings, 'last', rate_after(last, limits.interval, cost, now))
  end
end

-- The parts of a job record "<requeues_remaining>:<requeue_limit>:<enqueued_ms>:<payload>".
local function parse_record(record)
  local a = string.find(record, ':', 1, true)
  local b = string.find(record, ':', a + 1, true)
  local c = string.find(record, ':', b + 1, true)
  return tonumber(string.sub(record, 1, a - 1)), string.sub(record, a + 1, b - 1),
    string.sub(record, b + 1, c - 1), string.sub(record, c + 1)
end

-- A job's options ride in its record's second field, after its requeue limit:
-- "<limit>" alone, or "<limit>|c=<cost>|p=<priority>|x=<expire_at ms>|g=<campaign>",
-- each present only when not its default, so a job with none reads as before.
local function job_option(limit_field, name)
  return string.match(limit_field, '|' .. name .. '=([^|]*)')
end

local function requeue_limit_of(limit_field)
  return string.match(limit_field, '^[^|]*')
end

-- A job's deadline (epoch ms) from its limit field, or nil: a field without
-- options costs one find.
local function deadline_of(limit_field)
  return string.find(limit_field, '|', 1, true) and tonumber(job_option(limit_field, 'x'))
end

-- The limit field of a whole record ("<remaining>:<limit_field>:...").
local function limit_field_of(record)
  return string.match(record, '^[^:]*:([^:]*)')
end

-- Priorities (option p, 0-9, higher first) order the jobs inside a queue: those
-- of priority 0 wait in its list "<base>:q:<id>" as ever, those of priority p > 0
-- in "<base>:q<p>:<id>", each first in first out. "<base>:prio" (hash) holds, for
-- each queue with jobs queued above priority 0, the priorities whose lists hold
-- jobs, highest first ("95"): a take pops from the first of them, else from the
-- priority 0 list, so it stays one pop whatever the number of jobs. A shard that
-- never had a job of priority above 0 pays nothing (see read_settings_flags).

local function priorities_key(base)
  return base .. ':prio'
end

local function any_priorities(base)
  if priorities_here == nil then
    priorities_here = redis.call('EXISTS', priorities_key(base)) == 1
  end
  return priorities_here
end

-- A job's priority (0-9) from its limit field: a field without options costs one find.
local function priority_of(limit_field)
  return string.find(limit_field, '|', 1, true) and tonumber(job_option(limit_field, 'p')) or 0
end

-- The list holding a queue's queued jobs of `priority`.
local function queue_list(base, queue_id, priority)
  if priority == 0 then
    return base .. ':q:' .. queue_id
  end
  return base .. ':q' .. priority .. ':' .. queue_id
end

-- The priorities above 0 a queue holds queued jobs of, highest first ('' for none).
local function queue_priorities(base, queue_id)
  return any_priorities(base) and redis.call('HGET', priorities_key(base), queue_id) or ''
end

-- Note that a queue's list of `priority` (> 0) now holds jobs (`held`) or is empty.
local function note_priority(base, queue_id, priority, held)
  local present, listed = queue_priorities(base, queue_id), ''
  for p = 9, 1, -1 do
    if (p == priority and held) or (p ~= priority and string.find(present, p, 1, true)) then
      listed = listed .. p
    end
  end
  if listed == '' then
    redis.call('HDEL', priorities_key(base), queue_id)
  else
    redis.call('HSET', priorities_key(base), queue_id, listed)
    if not priorities_flagged then
      redis.call('HSET', base .. ':settings', 'prio', 1)
      priorities_flagged = true
    end
    priorities_here = true
  end
end

-- The jobs queued in a queue, all priorities together.
local function queue_length(base, queue_id)
  local length = redis.call('LLEN', base .. ':q:' .. queue_id)
  for p in string.gmatch(queue_priorities(base, queue_id), '%d') do
    length = length + redis.call('LLEN', queue_list(base, queue_id, tonumber(p)))
  end
  return length
end

-- The priority whose list a take pops from next: the highest present, else 0.
local function front_priority(base, queue_id)
  local present = queue_priorities(base, queue_id)
  return present == '' and 0 or tonumber(string.sub(present, 1, 1))
end

-- Queue a job at the back (or, `front`, the front) of its priority's list.
-- Returns whether the queue held no queued job before, and whether the job
-- overtook those it held (the first of a priority above theirs): a take hands it
-- out next, so its cost, not theirs, says when the queue is due (schedule_queue).
local function queue_push(base, queue_id, job_id, priority, front)
  local present = queue_priorities(base, queue_id)
  if redis.call(front and 'LPUSH' or 'RPUSH', queue_list(base, queue_id, priority), job_id) > 1 then
    return false, false
  end
  if priority == 0 then
    return present == '', false
  end
  note_priority(base, queue_id, priority, true)
  local first = present == '' and redis.call('EXISTS', base .. ':q:' .. queue_id) == 0
  return first, not first and priority > (tonumber(string.sub(present, 1, 1)) or 0)
end

-- Pop the job a take hands out next: the head of the highest priority present.
local function queue_pop(base, queue_id)
  local priority = front_priority(base, queue_id)
  local key = queue_list(base, queue_id, priority)
  local job_id = redis.call('LPOP', key)
  if priority > 0 and redis.call('EXISTS', key) == 0 then
    note_priority(base, queue_id, priority, false)
  end
  return job_id
end

-- Take a queued job of `priority` out of its list; true when it was there.
local function queue_remove(base, queue_id, job_id, priority)
  local key = queue_list(base, queue_id, priority)
  if redis.call('LREM', key, 1, job_id) == 0 then
    return false
  end
  if priority > 0 and redis.call('EXISTS', key) == 0 then
    note_priority(base, queue_id, priority, false)
  end
  return true
end

-- The index of deadlines: "<q>:<j>" -> expire_at of each job enqueued with one
-- (entries stay after the job is gone; the requeue pass drops them once due).
local function deadlines_key(base)
  return base .. ':deadlines'
end

-- Index a job's deadline. The index outlives its last deadline by a day, so
-- entries of jobs finished in time go with it once a type falls idle.
local function index_deadline(base, member, deadline, now)
  local key = deadlines_key(base)
  redis.call('ZADD', key, deadline, member)
  local keep = deadline - now + 86400000
  if redis.call('PTTL', key) < keep then
    redis.call('PEXPIRE', key, keep)
  end
end

-- Campaigns (campaigns.py): a job enqueued with a campaign counts in the hash
-- "<base>:cg:<id>" of its shard (total, queued, scheduled, active, finished,
-- dead, cancelled; started and, while nothing of it is live here, ended), the
-- counts moving inside the script that moves the job. "<base>:campaigns" (zset
-- id -> ms started) lists them, "<base>:cg_ended" (id -> ms ended) those over.
-- A script asks any_campaigns() once before reading a record for its campaign:
-- a type that never had one pays one EXISTS per call, nothing per job.
local campaigns_here = nil

local function any_campaigns(base)
  if campaigns_here == nil then
    campaigns_here = redis.call('EXISTS', base .. ':campaigns') == 1
  end
  return campaigns_here
end

-- The campaign a job record counts in, or nil.
local function campaign_in(record)
  local a = string.find(record, ':', 1, true)
  local b = string.find(record, ':', a + 1, true)
  return job_option(string.sub(record, a + 1, b - 1), 'g')
end

-- The moves of this call, id -> { state -> n }, written by campaign_flush.
local campaign_moves = {}

-- One job of campaign `id` (nil: none) moves from state `from` to `to` (either nil).
local function campaign_move(id, from, to)
  if not id then
    return
  end
  local moves = campaign_moves[id]
  if not moves then
    moves = {}
    campaign_moves[id] = moves
  end
  if from then moves[from] = (moves[from] or 0) - 1 end
  if to then moves[to] = (moves[to] or 0) + 1 end
end

-- The units a job's record says it costs (1 unless it gave "cost").
local function job_cost(record)
  return tonumber(job_option(string.match(record, '^[^:]*:([^:]*)'), 'c')) or 1
end

-- The units the job a take would hand out next from a queue costs (1 for an
-- empty queue): the head of its highest priority.
local function head_cost(base, queue_id)
  local job_id = redis.call('LINDEX', queue_list(base, queue_id, front_priority(base, queue_id)), 0)
  local record = job_id and redis.call('HGET', base .. ':j:' .. queue_id, job_id)
  return record and job_cost(record) or 1
end

-- Whether a finish or fail with `receipt` ("" = any) may act on the job now:
-- 1 yes, 0 it is not active (or waits to be retried, so no delivery is under
-- way), -1 the receipt does not name its current delivery.
local function check_delivery(k, jobs_key, member, job_id, receipt)
  local current = redis.call('HGET', k.receipts, member)
  -- a receipt is held only while its job is in the active set (take writes both,
  -- finish, put_back and clear remove both), so only a job without one needs a look
  if current and current ~= 'retry' then
    return (receipt ~= '' and current ~= receipt) and -1 or 1
  end
  if not redis.call('ZSCORE', k.active, member) or current == 'retry' then
    return redis.call('HEXISTS', jobs_key, job_id) == 1 and receipt ~= '' and -1 or 0
  end
  if receipt ~= '' and current ~= receipt then
    return -1
  end
  return 1
end

-- Autoscaling (autoscale.lua reads it): every backlogged queue that is not paused
-- adds its share of wanted concurrency, min(rate x duration, cap), to sums in the
-- settings hash, so a read costs the same with 100,000 queues as with one. The
-- duration is read at read time, so each share is kept in the form that stays
-- exact as it moves: a rate alone in "demand:r" (jobs/s x 1e6: 1e9 / interval),
-- a cap alone in "demand:c", a queue with neither counted in "demand:f"; one with
-- both in a pair "demand:r<b>" / "demand:c<b>", b its break-even duration
-- cap x interval (ms) on a log scale (4 buckets per doubling), the reader taking
-- min(rate x duration, cap) per bucket. The queue's record in the demand hash says
-- what it added ("r=5000000", "r37=5000000 c37=2", "c=3", "f=1"), so leaving takes
-- back exactly that.
local function demand_record(interval, cap)
  if interval <= 0 then
    return cap and ('c=' .. cap) or 'f=1'
  end
  local rate = string.format('%d', math.floor(1e9 / interval))
  if not cap then
    return 'r=' .. rate
  end
  local bucket = math.floor(4 * math.log(cap * interval) / math.log(2))
  return 'r' .. bucket .. '=' .. rate .. ' c' .. bucket .. '=' .. cap
end

local function add_demand(k, record, sign)
  for name, amount in string.gmatch(record, '(%w+)=(%d+)') do
    local field = 'demand:' .. name
    -- a rate of 0 (an interval over 1e9 ms) adds nothing: -1 x 0 would be "-0", which HINCRBY refuses
    if amount ~= '0' and redis.call('HINCRBY', k.settings, field, sign * tonumber(amount)) == 0 then
      redis.call('HDEL', k.settings, field)
    end
  end
end

-- Make the queue's share the one `record` describes (nil: none, the queue is
-- empty or paused); no write when it already is.
local function count_demand(k, queue_id, record)
  local held = redis.call('HGET', k.demand, queue_id)
  if held == (record or false) then
    return
  end
  if held then
    add_demand(k, held, -1)
  end
  if record then
    redis.call('HSET', k.demand, queue_id, record)
    add_demand(k, record, 1)
  else
    redis.call('HDEL', k.demand, queue_id)
  end
end

-- A queue left with no queued job: out of the ready set, and it wants no worker.
local function unlist_empty(k, base, queue_id)
  unlist(k, base, queue_id)
  count_demand(k, queue_id, nil)
end

-- List a queue in the ready set at the time its next job may go, or take it out
-- while it cannot be served: empty, at its concurrency cap, or paused until
-- resumed. Its rate state L is its ":last:" key (see rate_due); an interval
-- change needs no bookkeeping: it counts from L. With burst 1 every job, whatever
-- its cost, waits for L + interval, so only a burst needs the head job's cost.
local function schedule_queue(k, base, queue_id, now)
  if queue_length(base, queue_id) == 0 then
    unlist_empty(k, base, queue_id)
    return
  end
  local interval, burst, cap, weight = queue_limits(k, queue_id)
  local paused = tonumber(redis.call('HGET', k.paused, queue_id))
  if paused and paused >= 0 and paused <= now then
    redis.call('HDEL', k.paused, queue_id)  -- a timed pause that is over
    paused = nil
  end
  -- a queue at its cap still wants its cap's workers: only a pause takes its share
  count_demand(k, queue_id, not paused and demand_record(interval, cap) or nil)
  if paused == -1 or (cap and (tonumber(redis.call('HGET', k.nactive, queue_id)) or 0) >= cap) then
    unlist(k, base, queue_id)
    return
  end
  -- a queue already listed keeps its place (fairness: the longest waiting goes
  -- first) unless its rate says otherwise; one listed anew is due now at the earliest
  local listed = tonumber(redis.call('ZSCORE', k.ready, queue_id))
  local last = tonumber(redis.call('GET', base .. ':last:' .. queue_id))
  local due = listed or now
  if last then
    -- borrowed burst never puts it before queues that were really waiting: a
    -- rate that allows a job now lists it at now, or at the place it already had
    local cost = burst > 1 and head_cost(base, queue_id) or 1
    local by_rate = rate_due(last, interval, burst, cost)
    due = math.max(by_rate, math.min(listed or now, now))
    if listed and listed < due and by_rate <= now and turn_counted(k, weight) then
      -- a queue keeping its place within its turn (weighted_place) keeps it while
      -- its rate lets a job go now: sent behind the queues served since, its turn
      -- would go on a round later and they would get two turns in one of its
      due = listed
    end
  end
  if paused then
    due = math.max(due, paused)
  end
  redis.call('ZADD', k.ready, due, queue_id)
end

-- An idle queue's rate state (its ":last:" key) must outlive now by
-- max(interval, memory, last + interval - now) ms, so a refill within that time
-- still waits for the rate limit. Lengthens its expiry to that (never shortens
-- it); with `idle_only`, a state kept without expiry (the queue holds jobs) stays so.
local function remember_rate(k, base, queue_id, memory, now, idle_only)
  local last_key = base .. ':last:' .. queue_id
  local ttl = redis.call('PTTL', last_key)
  if ttl == -2 or (idle_only and ttl == -1) then
    return
  end
  local interval = queue_limits(k, queue_id)
  local last = tonumber(redis.call('GET', last_key))
  local keep = math.max(interval, memory, (last or 0) + interval - now)
  if ttl < keep then
    redis.call('PEXPIRE', last_key, keep)
  end
end

-- A queue's last queued, scheduled or active job is gone: it leaves the queues
-- hash (and the known set, unless it has limits of its own), and its rate state
-- starts to expire (see remember_rate).
local function forget_queue(k, base, queue_id, memory, now)
  remember_rate(k, base, queue_id, memory, now, false)
  redis.call('HDEL', k.queues, queue_id)
  redis.call('HDEL', k.nactive, queue_id)
  if no_overrides or redis.call('HEXISTS', k.limits, queue_id) == 0 then
    redis.call('ZREM', k.known, queue_id)
  end
end

-- Tell every server that a job of this type may be ready now: long-polling
-- requests parked on the type wake up; the message is the queue type (a shard's
-- internal name). On Redis 7+ on the shard's own channel "<base>:ready" (SPUBLISH:
-- Cluster delivers it within the slot's shard); before 7.0, which has no
-- SPUBLISH (nor REDIS_VERSION_NUM), on "<prefix>:ready", broadcast to every node.
-- sharq_server/announcements.py subscribes the same way.
local function announce(base)
  local prefix, queue_type = string.match(base, '^(.*):{([^}]*)}$')
  if redis.REDIS_VERSION_NUM then
    redis.call('SPUBLISH', base .. ':ready', queue_type)
  else
    redis.call('PUBLISH', prefix .. ':ready', queue_type)
  end
end

-- Record when the queue's head job (`job_id`; nil: the queue is empty) was
-- enqueued: the type's oldest queued job is the lowest of these.
local function set_head(k, base, queue_id, job_id)
  local record = job_id and redis.call('HGET', base .. ':j:' .. queue_id, job_id)
  if not record then
    redis.call('ZREM', k.heads, queue_id)
    return
  end
  local _, _, enqueued = parse_record(record)
  redis.call('ZADD', k.heads, enqueued, queue_id)
end

-- Record the queue's head anew after jobs left it (`length`: the jobs it still
-- holds queued, or nil to count them): the oldest of the heads of its priorities.
local function refresh_head(k, base, queue_id, length)
  local present = queue_priorities(base, queue_id)
  if present == '' then
    set_head(k, base, queue_id, length ~= 0 and redis.call('LINDEX', base .. ':q:' .. queue_id, 0) or nil)
    return
  end
  local oldest = nil
  for p in string.gmatch('0' .. present, '%d') do
    local job_id = redis.call('LINDEX', queue_list(base, queue_id, tonumber(p)), 0)
    local record = job_id and redis.call('HGET', base .. ':j:' .. queue_id, job_id)
    if record then
      local _, _, enqueued = parse_record(record)
      oldest = math.min(oldest or tonumber(enqueued), tonumber(enqueued))
    end
  end
  if oldest then
    redis.call('ZADD', k.heads, oldest, queue_id)
  else
    redis.call('ZREM', k.heads, queue_id)
  end
end

-- A delivery of the queue ended (finished, failed, expired or handed back): its
-- concurrency slot frees, and a queue that was at its cap may be served again.
local function free_slot(k, base, queue_id, now)
  -- a count of 0 stays while the queue holds jobs (forget_queue drops it): one
  -- command fewer for each job of a queue served one job at a time
  local left = redis.call('HINCRBY', k.nactive, queue_id, '-1')
  if left < 0 then
    redis.call('HDEL', k.nactive, queue_id)
  end
  local type_freed = false
  local type_wide = type_limits(k)
  if type_wide and type_wide.cap and redis.call('HEXISTS', k.settings, 'active') == 1 then
    -- the type's count drops: a poll waiting on its cap may go now
    local held = redis.call('HINCRBY', k.settings, 'active', -1)
    if held < 0 then redis.call('HSET', k.settings, 'active', 0) end
    type_freed = held == type_wide.cap - 1
  end
  local cap = tonumber((select(3, override(k, queue_id))))  -- only an override caps a queue
  if cap and left == cap - 1 then
    schedule_queue(k, base, queue_id, now)
    return true
  end
  return type_freed
end

-- Add `n` to the type's count of its minute in the hour the dashboard draws:
-- 'e' enqueued, 'd' handed out, 'f' finished, 'x' failed. Five fields per minute
-- with add_queued's (a small hash, whatever the number of queues), kept 61 minutes.
local function count_rate(base, now, field, n)
  local key = base .. ':rates:' .. (now - (now % 60000))
  if redis.call('HINCRBY', key, field, n) == n then
    redis.call('PEXPIRE', key, 3660000 - (now % 60000))
  end
end

-- Add `n` (negative: remove) to the type's jobs queued in lists, and note the new
-- count ('q') in its minute's rates: the backlog chart reads each minute's last
-- value, so every change of the count goes through here (a deleted queue, jobs
-- put back or promoted, not only enqueues and takes). The first note of a minute
-- no count came before sets the expiry.
local function add_queued(k, base, now, n)
  local queued = redis.call('HINCRBY', k.totals, 'queued', n)
  local key = base .. ':rates:' .. (now - (now % 60000))
  if redis.call('HSET', key, 'q', queued) == 1 then
    redis.call('PEXPIRE', key, 3660000 - (now % 60000))
  end
end

-- Enqueue a campaign's on_done job `job_id` (body: JSON text) into queue_id of
-- this shard, unless its queue knows that job_id already (queued, active, dead,
-- or finished within the dedupe window). Queue limits do not refuse it.
local function enqueue_done_job(k, base, queue_id, job_id, body, limit, now)
  local member, jobs_key = queue_id .. ':' .. job_id, base .. ':j:' .. queue_id
  local known = redis.call('HEXISTS', k.dead, member) == 1 or redis.call('ZSCORE', k.done, member)
  if not known and redis.call('HSETNX', jobs_key, job_id, limit .. ':' .. limit .. ':' .. now .. ':' .. body) == 1 then
    local given = tonumber(redis.call('HGET', k.queues, queue_id))
    if given == nil then
      redis.call('PERSIST', base .. ':last:' .. queue_id)
      redis.call('ZADD', k.known, 0, queue_id)
    end
    if given ~= 0 then
      redis.call('HSET', k.queues, queue_id, 0)
    end
    if queue_push(base, queue_id, job_id, 0, false) then  -- an on_done job has priority 0
      redis.call('ZADD', k.heads, now, queue_id)
    end
    note_cost(base, 1)  -- and costs one unit
    schedule_queue(k, base, queue_id, now)
    redis.call('HINCRBY', k.totals, 'enqueued', 1)
    add_queued(k, base, now, 1)
    announce(base)
  end
end

-- A campaign is done on this shard of an unsharded type whose on_done names a
-- queue of the same type (the same slot): its on_done job is enqueued here, in
-- the script that made it done, and noted (campaigns.py enqueues the others from
-- the requeue pass, with campaign_done_send).
local function campaign_done_job(k, base, key, id, now)
  local stored = redis.call('HMGET', key, 'on_done', 'notified', 'on_done_payload', 'on_done_limit')
  if not stored[1] or stored[2] or not stored[3] then
    return
  end
  local target = cjson.decode(stored[1])
  local queue_type = string.match(base, ':{([^}]*)}$')
  if target.queue_type ~= queue_type or (tonumber(redis.call('HGET', k.settings, 'shards')) or 1) ~= 1 then
    return
  end
  local c = redis.call('HMGET', key, 'total', 'queued', 'scheduled', 'active', 'finished', 'dead', 'expired', 'cancelled')
  local body = '{"campaign":"' .. id .. '","queue_type":"' .. queue_type .. '","payload":' .. stored[3]
  local names = { 'total', 'queued', 'scheduled', 'active', 'finished', 'dead', 'expired', 'cancelled' }
  for i, name in ipairs(names) do
    body = body .. ',"' .. name .. '":' .. (tonumber(c[i]) or 0)
  end
  body = body .. '}'
  enqueue_done_job(k, base, target.queue_id, 'campaign-done.' .. id, body, stored[4] or '-1', now)
  redis.call('HSET', key, 'notified', now)
  redis.call('ZREM', base .. ':cg_notify', id)
end

-- Write the call's moves (once per campaign, however many jobs moved) into the
-- campaign's hash and the type's jobs in campaigns by state ("<base>:cg_totals",
-- for the metrics), and note when a campaign's last live job here ended or a live
-- one came back. A campaign forgotten (campaign_retention_ms) while a dead letter
-- of it stayed is not counted again.
local function campaign_flush(k, base, now)
  for id, moves in pairs(campaign_moves) do
    local key = base .. ':cg:' .. id
    if redis.call('EXISTS', key) == 1 then
      for state, n in pairs(moves) do
        if n ~= 0 then
          redis.call('HINCRBY', key, state, n)
          redis.call('HINCRBY', base .. ':cg_totals', state, n)
        end
      end
      local c = redis.call('HMGET', key, 'queued', 'scheduled', 'active', 'ended')
      local live = (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) + (tonumber(c[3]) or 0)
      if live == 0 and not c[4] then
        redis.call('HSET', key, 'ended', now)
        redis.call('ZADD', base .. ':cg_ended', now, id)
        if (tonumber(redis.call('HGET', key, 'total')) or 0) > 0 or redis.call('HEXISTS', key, 'cancel') == 1 then
          campaign_done_job(k, base, key, id, now)
        end
      elseif live > 0 and c[4] then
        redis.call('HDEL', key, 'ended')
        redis.call('ZREM', base .. ':cg_ended', id)
      end
    end
  end
  campaign_moves = {}
end

-- The receipt holder reported that a job cost `real` units where its record said
-- `record`'s: a higher real cost charges the difference to the queue's and the
-- type's rate state (the next job waits longer), a lower one refunds nothing.
local function charge_real_cost(k, base, queue_id, record, real, now)
  local extra = real - job_cost(record)
  if extra <= 0 then
    return
  end
  local last_key = base .. ':last:' .. queue_id
  local last = tonumber(redis.call('GET', last_key))
  if last then
    redis.call('SET', last_key, last + extra * queue_limits(k, queue_id), 'KEEPTTL')
  end
  local type_wide = type_limits(k)
  local type_last = type_wide and type_wide.interval and tonumber(redis.call('HGET', k.settings, 'last'))
  if type_last then
    redis.call('HSET', k.settings, 'last', type_last + extra * type_wide.interval)
  end
  -- quotas count it too: a day's tokens are what was really used
  local own = queue_quotas(base, queue_id, true)
  if own then quota_count(base, queue_id, own, extra, now) end
  if type_wide and type_wide.quotas then quota_count(base, '*', type_wide.quotas, extra, now) end
  schedule_queue(k, base, queue_id, now)
end

-- Move delayed jobs that are due to the back of their queues (of their priority), at most `limit`,
-- earliest first. Returns how many moved.
local function promote(k, base, now, limit)
  local due = redis.call('ZRANGEBYSCORE', k.scheduled, '-inf', now, 'LIMIT', 0, limit)
  for _, member in ipairs(due) do
    local sep = string.find(member, ':', 1, true)
    local queue_id, job_id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
    redis.call('ZREM', k.scheduled, member)
    if redis.call('HINCRBY', k.nsched, queue_id, -1) <= 0 then
      redis.call('HDEL', k.nsched, queue_id)
    end
    -- its priority is in its record: no queue may hold a list of it yet
    local record = redis.call('HGET', base .. ':j:' .. queue_id, job_id)
    local priority = record and priority_of(limit_field_of(record)) or 0
    local first, overtook = queue_push(base, queue_id, job_id, priority, false)
    if first then
      set_head(k, base, queue_id, job_id)
    end
    if first or overtook then
      schedule_queue(k, base, queue_id, now)
    end
    if any_campaigns(base) then
      campaign_move(record and campaign_in(record), 'scheduled', 'queued')
    end
  end
  if #due > 0 then
    add_queued(k, base, now, #due)
  end
  return #due
end

-- A hash field longer than Redis' hash-max-listpack-value (64 bytes by default):
-- a hash holding it is a hash table, never the flat list that small hashes are
-- (hash-max-listpack-entries, 512), where every HINCRBY scans all fields.
local HASH_TABLE_MARK = string.rep('#', 65)

-- Add a call's counts to the stats bucket of its minute: `total` under `field`
-- ('e' enqueued, 'd' dequeued) and each queue's under "<field>:<queue_id>", one
-- HINCRBY per queue however many of its jobs the call moved. The first count of
-- the minute sets the expiry (the oldest of the ten buckets metrics reads
-- started 9 minutes before this one) and the mark: a busy type's bucket gets two
-- fields per queue, a few hundred in each shard of a type spread over shards, and
-- counting into a flat list of them cost a take of 100 jobs about 15% more Redis
-- time (bench/cluster.py). A hash table costs a few hundred bytes more per bucket.
local function count_minute(base, now, field, total, by_queue)
  count_rate(base, now, field, total)
  local key = base .. ':stats:' .. (now - (now % 60000))
  if redis.call('HINCRBY', key, field, total) == total then
    redis.call('HSETNX', key, HASH_TABLE_MARK, '')
    redis.call('PEXPIRE', key, 660000 - (now % 60000))
  end
  for queue_id, n in pairs(by_queue) do
    redis.call('HINCRBY', key, field .. ':' .. queue_id, n)
  end
end

-- A job leaves for the dead letters with `reason`: its record and last error
-- go into the dead-letter JSON (with its options other than its requeue limit,
-- so a retry keeps them), and a queue left with no job is forgotten. The caller
-- has taken it out of its list, the scheduled set or the active set: `from`, the
-- campaign state it leaves ('queued', 'scheduled' or 'active'; its campaign
-- counts it 'expired' when that is the reason, else 'dead').
local function bury(k, base, queue_id, job_id, record, reason, now, memory, from)
  local member = queue_id .. ':' .. job_id
  local jobs_key = base .. ':j:' .. queue_id
  local _, limit, _, payload = parse_record(record)
  local requeue_limit = requeue_limit_of(limit)
  local options = string.sub(limit, #requeue_limit + 1)
  local last_error = redis.call('HGET', k.errors, member)
  local interval = queue_limits(k, queue_id)
  local campaign = options ~= '' and job_option(limit, 'g') or nil
  redis.call('HDEL', k.errors, member)
  redis.call('HDEL', jobs_key, job_id)
  if redis.call('EXISTS', jobs_key) == 0 then
    forget_queue(k, base, queue_id, memory, now)
  end
  redis.call('HSET', k.dead, member, cjson.encode({
    payload = payload, requeue_limit = tonumber(requeue_limit), interval = interval,
    reason = reason, last_error = last_error or cjson.null,
    options = options ~= '' and options or nil, expire_at = deadline_of(limit), campaign = campaign }))
  redis.call('ZADD', k.dead_at, now, member)
  redis.call('HINCRBY', k.totals, 'dead', 1)
  campaign_move(campaign, from, reason == 'expired' and 'expired' or 'dead')
end

-- A job not handed out by its deadline: a dead letter with reason "expired",
-- counted as such. The caller has taken it out of its list or the scheduled set.
local function expire_job(k, base, queue_id, job_id, record, now, memory, from)
  bury(k, base, queue_id, job_id, record, 'expired', now, memory, from)
  redis.call('HINCRBY', k.totals, 'expired', 1)
end

-- At most this many expired heads are dropped per take: the rest wait for the
-- next take or the requeue pass, so no call's cost grows with their number.
local MAX_EXPIRED_PER_TAKE = 10

-- Hand out up to `count` ready jobs, fairest queue first, each under a fresh
-- receipt `token`.<n>. Appends queue_id, job_id, record, queue_length, receipt
-- per job to `out`; returns how many were served and, when none was, the ms
-- until the earliest queued or delayed job is due (-1: none, or the type is
-- paused until resumed). The active set and receipts are written once at the
-- end, with every job the call took (nothing in between reads them).
local function take(k, base, now, expire, count, token, out, memory)
  -- a timed pause whose end has passed holds nothing, though its key may live a
  -- ms or so on: its PX expiry runs on Redis's clock (frozen at the script's
  -- start), `now` is read later or given. Held, it answered no due time (a wait
  -- below 0) and long polls waited for an announcement an ending pause never makes.
  local type_paused = tonumber(redis.call('GET', k.type_paused))
  if type_paused and (type_paused < 0 or type_paused > now) then
    return 0, type_paused < 0 and -1 or type_paused - now
  end
  promote(k, base, now, 100)
  local type_wide = type_limits(k)
  local any_quotas = queue_quotas_exist
  local served, wait, expired = 0, 0, 0
  local limits, by_queue, active, receipts = {}, {}, {}, {}
  -- numbers given to redis.call are formatted with %.17g, job by job: the
  -- arguments of the per-job commands are text where they can be, and the
  -- expiry that every job of the call shares is formatted once, as Redis would
  -- (%d turns one past 2^63 ms, an expiry meant as never, into one long past)
  local expiry = string.format('%.17g', now + expire)
  while served < count do
    local head = redis.call('ZRANGE', k.ready, '0', '0', 'WITHSCORES')
    if #head == 0 or tonumber(head[2]) > now then
      if served == 0 then
        wait = #head == 0 and -1 or tonumber(head[2]) - now
        local next_delayed = redis.call('ZRANGE', k.scheduled, 0, 0, 'WITHSCORES')
        if #next_delayed > 0 and (wait < 0 or tonumber(next_delayed[2]) - now < wait) then
          wait = math.max(tonumber(next_delayed[2]) - now, 0)
        end
      end
      break
    end
    local queue_id = head[1]
    local last_key = base .. ':last:' .. queue_id
    local job_id = queue_pop(base, queue_id)
    local record = job_id and redis.call('HGET', base .. ':j:' .. queue_id, job_id)
    local deadline = record and deadline_of(limit_field_of(record))
    local expiring = deadline and deadline <= now
    local interval, burst, cap, weight, quotas, cost, last, due, held, gate, turn, quota_counted
    if job_id and not expiring then
      if not limits[queue_id] then
        local q_interval, q_burst, q_cap, q_weight = queue_limits(k, queue_id)  -- nothing here changes them
        limits[queue_id] = {
          q_interval, q_burst, q_cap or false, q_weight, queue_quotas(base, queue_id, any_quotas) or false }
      end
      interval, burst, cap, weight, quotas = unpack(limits[queue_id])
      cap = cap or nil
      cost = job_cost(record)
      last = tonumber(redis.call('GET', last_key))
      due = last and rate_due(last, interval, burst, cost)
      -- a queue held by a quota leaves the ready set until its window resets; a
      -- job its rate lets go is counted in its windows at once (quota_take), and
      -- taken back below should it not go after all
      if quotas then
        if due and due > now then
          held = quota_hold(base, queue_id, quotas, cost, now)
        else
          held = quota_take(base, queue_id, quotas, cost, now)
          quota_counted = not held
        end
        if held and (not due or due < held) then due = held end
      end
      -- the type-wide limits judge the job that would go out, once its queue lets
      -- it: one that expires or that its queue holds must not stop the others
      if type_wide and not (due and due > now) then
        gate = type_gate(k, base, type_wide, now, cost)
      end
      -- its turn is spent only on a job that goes (turn_take writes it)
      if not (due and due > now) and not (gate and gate ~= 0) then
        turn = turn_take(k, base, queue_id, weight, cost)
      end
      if quota_counted and ((gate and gate ~= 0) or (turn and turn[1] < 0)) then
        quota_count(base, queue_id, quotas, -cost, now)
      end
    end
    if expiring then
      -- never handed out: it expires, and the queue keeps its place for its next job
      expire_job(k, base, queue_id, job_id, record, now, memory, 'queued')
      expired = expired + 1
      local length = queue_length(base, queue_id)
      refresh_head(k, base, queue_id, length)
      if length == 0 then
        unlist_empty(k, base, queue_id)
      end
      if expired == MAX_EXPIRED_PER_TAKE then
        break  -- wait stays 0: more may be ready behind them
      end
    elseif not job_id then
      unlist_empty(k, base, queue_id)
    elseif due and due > now then
      -- a costlier job came to the front since the queue was listed (a burst lists
      -- a queue by its head's cost), or a quota holds it: it waits, first of its
      -- priority again, until due
      queue_push(base, queue_id, job_id, priority_of(limit_field_of(record)), true)
      redis.call('ZADD', k.ready, due, queue_id)
      if held then note_held(base, queue_id, held, now) end
    elseif gate and gate ~= 0 then
      -- ready, but the type-wide limits hold it: back in front, its queue keeps its
      -- place, and the take stops there, saying when they let it go
      queue_push(base, queue_id, job_id, priority_of(limit_field_of(record)), true)
      if served == 0 then wait = gate end
      break
    elseif turn and turn[1] < 0 then
      -- its turn cannot cover this job (turn_take): the job waits, first of its
      -- priority again, and the queue goes to the back for its next turn
      queue_push(base, queue_id, job_id, priority_of(limit_field_of(record)), true)
      redis.call('ZADD', k.ready, now, queue_id)
    else
      local member = queue_id .. ':' .. job_id
      local receipt = token .. '.' .. served
      active[#active + 1] = expiry
      active[#active + 1] = member
      receipts[#receipts + 1] = member
      receipts[#receipts + 1] = receipt
      local running = redis.call('HINCRBY', k.nactive, queue_id, '1')
      -- the rate state: kept without expiry while the queue holds jobs (forget_queue)
      last = rate_after(last, interval, cost, now)
      redis.call('SET', last_key, last)
      -- what schedule_queue would do, from what is known here: the queue was
      -- listed and due, so it is not paused
      local length = queue_length(base, queue_id)
      refresh_head(k, base, queue_id, length)
      if length == 0 or (cap and running >= cap) then
        redis.call('ZREM', k.ready, queue_id)
        end_round(base, queue_id, turn)
        if length == 0 then count_demand(k, queue_id, nil) end
      else
        -- no earlier than now (its place, for a weighted queue's turns): borrowed
        -- burst must not jump queues that waited
        -- the next job's cost matters to a burst, and to a turn it may fit in
        local fits = turn and largest_cost > 1 and turn[1] > 0
        local next_cost = (burst > 1 or fits) and head_cost(base, queue_id) or 1
        local next_due = rate_due(last, interval, burst, next_cost)
        local place = weighted_place(base, queue_id, weight, turn, next_cost, next_due, tonumber(head[2]), now)
        redis.call('ZADD', k.ready, place, queue_id)
      end
      if type_wide then type_took(k, base, type_wide, now, cost) end
      if any_campaigns(base) then
        campaign_move(campaign_in(record), 'queued', 'active')
      end
      by_queue[queue_id] = (by_queue[queue_id] or 0) + 1
      out[#out + 1] = queue_id
      out[#out + 1] = job_id
      out[#out + 1] = record
      out[#out + 1] = length
      out[#out + 1] = receipt
      served = served + 1
    end
  end
  if served > 0 then
    redis.call('ZADD', k.active, unpack(active))
    redis.call('HSET', k.receipts, unpack(receipts))
    count_minute(base, now, 'd', served, by_queue)
    redis.call('HINCRBY', k.totals, 'dequeued', served)
    redis.call('HSET', k.totals, 'taken_at', now)  -- "no worker took a job for N s"
  end
  if served + expired > 0 then
    add_queued(k, base, now, -served - expired)
  end
  campaign_flush(k, base, now)
  return served, wait
end

-- An active job's delivery is over and it returns to its queue: to the front
-- of its priority with one requeue fewer (when `counts` and its limit is not -1), or, when it
-- has none left or `dead` is asked, to the dead letters with `reason`; one whose
-- deadline has passed expires instead of going back. The caller has removed it
-- from the active set. Returns 'requeued', 'dead', 'expired' or 'gone'.
local function put_back(k, base, queue_id, job_id, counts, dead, reason, now, memory)
  local member = queue_id .. ':' .. job_id
  local jobs_key = base .. ':j:' .. queue_id
  local record = redis.call('HGET', jobs_key, job_id)
  local held_slot = redis.call('HGET', k.receipts, member) ~= 'retry'
  redis.call('HDEL', k.receipts, member)
  if held_slot then
    free_slot(k, base, queue_id, now)
  end
  if not record then
    return 'gone'
  end
  local remaining, limit, enqueued, payload = parse_record(record)
  local campaign = job_option(limit, 'g')
  if campaign and not dead and redis.call('HEXISTS', base .. ':cg:' .. campaign, 'cancel') == 1 then
    -- its campaign was cancelled while it was out: it ends here, not in its queue
    redis.call('HDEL', k.errors, member)
    redis.call('HDEL', jobs_key, job_id)
    if redis.call('EXISTS', jobs_key) == 0 then
      forget_queue(k, base, queue_id, memory, now)
    end
    redis.call('ZADD', base .. ':cancelled', now, member)
    campaign_move(campaign, 'active', 'cancelled')
    return 'cancelled'
  end
  if dead or (counts and remaining == 0) then
    bury(k, base, queue_id, job_id, record, reason, now, memory, 'active')
    return 'dead'
  end
  local deadline = deadline_of(limit)
  if deadline and deadline <= now then
    expire_job(k, base, queue_id, job_id, record, now, memory, 'active')
    return 'expired'
  end
  campaign_move(campaign, 'active', 'queued')
  if counts and remaining > 0 then
    redis.call('HSET', jobs_key, job_id, (remaining - 1) .. ':' .. limit .. ':' .. enqueued .. ':' .. payload)
  end
  local first, overtook = queue_push(base, queue_id, job_id, priority_of(limit), true)
  if queue_priorities(base, queue_id) == '' then
    redis.call('ZADD', k.heads, enqueued, queue_id)  -- back in front: the queue's oldest
  else
    refresh_head(k, base, queue_id)  -- in front of its priority: the oldest of the heads stays
  end
  if first or overtook then
    schedule_queue(k, base, queue_id, now)
  end
  add_queued(k, base, now, 1)
  return 'requeued'
end
