-- lib.lua: helpers shared by every flask-jobs script; prepended to each one when it is loaded.
--
-- ARGV[1] is always the key prefix with its colon ("jobs:"); KEYS[1] is a key the script
-- touches, built from the same prefix, so a Redis Cluster client can route the call (every key
-- shares the prefix: a hash tag in it puts them all in one slot). The keys, after the prefix
-- (the table in flask_jobs/keys.py says more; tests/test_keys.py checks that the two agree):
--   t:<id>                 hash     task record
--   q:<queue>:<prio>       list     ready task ids of one queue and priority
--   wake:<queue>           list     wake-up token for idle consumers
--   idle:<queue>           set      idle consumers of a queue
--   w:<worker>:in:<slot>   list     a consumer's inbox (tasks handed over at enqueue)
--   w:<worker>:idle        set      a worker's idle registrations and inboxes
--   w:<worker>:claims      hash     what each consumer's last claim returned (claim.lua)
--   g:<group>              list     member ids of a group
--   gc:<id>                hash     counters of a group or a chain (and a chord's held body)
--   dd:<key>               string   the task holding a dedup key
--   delayed                zset     countdown, eta and retry ids by due time
--   w:<worker>:active      hash     tasks a worker holds: id -> attempt
--   hb:<worker>            string   heartbeat
--   workers                set      registered workers
--   rates                  hash     rate limits: task name -> ms between runs
--   rl:<name>              string   next free slot of a rate-limited task name
--   lock:reaper            string   the reaper's mutex
--   dlq                    list     dead letters
--   stats                  hash     counters
--   ev:<id>                channel  a task's state changes
--   control                channel  broadcasts to workers
--   events                 stream   task and worker events, a batch per entry
--   conf                   hash     settings the scripts read (events: the stream's length)
--   m:<name>               hash     counters of a task name (outcomes, runtime buckets)
--   m:names                set      task names with counters
--   reply:<id>             list     workers' replies to one broadcast
--   beat:e:<name>          hash     a periodic task: definition and run state
--   beat:due               zset     enabled periodic tasks by due time (ms)
--   beat:names             set      every periodic task's name
--   beat:leader            string   the beat process that may send (a lease)
-- Time always comes from this server (TIME), never from a client clock.

-- Redis 6.2 refuses writes after TIME unless effects replication is on (7.x always is).
if redis.replicate_commands then pcall(redis.replicate_commands) end

local P = ARGV[1]
local FINAL = {SUCCESS = true, FAILURE = true, REVOKED = true}
local DLQ_CAP = 10000
local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function tkey(id) return P .. 't:' .. id end

local function publish(id, state) redis.call('PUBLISH', P .. 'ev:' .. id, state) end

-- Events and counters, batched: a script notes what happened (note, count) and flush() writes
-- it at the end: one XADD to the events stream (when JOBS_EVENTS is on: conf's 'events' field
-- holds the stream's length) whose 'e' field holds one line per event,
-- "<type>\t<id>\t<name>\t<info>", and one HINCRBY per task name and counter touched (m:<name>:
-- succeeded, failed, retried, revoked, expired, dead, and runtime buckets b1..b15 with rt, the
-- runtime sum in ms, for the metrics). The stream entry's id is its time.
local EV_LEN
local evs, counts = {}, {}
local function note(kind, id, name, info)
  if EV_LEN == nil then
    EV_LEN = tonumber(redis.call('HGET', P .. 'conf', 'events') or '0') or 0
  end
  if EV_LEN > 0 then
    evs[#evs + 1] = kind .. '\t' .. id .. '\t' .. (name or '') .. '\t' .. (info or '')
  end
end
-- Runtime buckets in ms (Prometheus's default seconds buckets, and longer ones).
local BUCKETS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
local function count(name, field, runtime)
  if not name or name == '' then return end
  local c = counts[name]
  if not c then c = {} counts[name] = c end
  c[field] = (c[field] or 0) + 1
  if runtime then
    local b = #BUCKETS + 1
    for i, limit in ipairs(BUCKETS) do
      if runtime <= limit then b = i break end
    end
    c['b' .. b] = (c['b' .. b] or 0) + 1
    c.rt = (c.rt or 0) + runtime
  end
end
local function flush(worker)
  if #evs > 0 then
    redis.call('XADD', P .. 'events', 'MAXLEN', '~', EV_LEN, '*', 'w', worker or '',
      'e', table.concat(evs, '\n'))
    evs = {}
  end
  for name, c in pairs(counts) do
    local mk = P .. 'm:' .. name
    for field, v in pairs(c) do redis.call('HINCRBY', mk, field, v) end
    redis.call('SADD', P .. 'm:names', name)
  end
  counts = {}
end

-- Wake one idle consumer of a queue: at most one token waits in the list (BLPOP takes it).
local function wake(queue)
  local wk = P .. 'wake:' .. queue
  if redis.call('LLEN', wk) == 0 then redis.call('RPUSH', wk, '1') end
end

-- Put an id on its ready list (at the front when given back) and wake an idle worker.
local function push_ready(id, queue, prio, front)
  local lk = P .. 'q:' .. queue .. ':' .. prio
  if front then redis.call('RPUSH', lk, id) else redis.call('LPUSH', lk, id) end
  wake(queue)
end

-- Queue a chord's held body (chord.lua) now that its header is done, unless it was revoked.
local function release(id)
  local f = redis.call('HMGET', tkey(id), 'state', 'queue', 'prio')
  if f[1] == 'PENDING' then push_ready(id, f[2], f[3], false) end
end

-- A task reached a final state: count it in its group (gc:<group>: done, ok / failed /
-- revoked, the first failure) and its chain (gc:<chain>: done), and publish the change on their
-- channels, so their one status URL moves without reading every member. The member that ends a
-- group releases its chord's body, exactly once: the counters move in the same script that
-- writes the final state, which runs once per task (writes are fenced by the attempt).
-- grp, chn: the record's group and chain fields (false when none); fwd: its fwd field (nil:
-- read it here), the task it finishes for (see forward()).
local forward
local function settle(id, state, grp, chn, fwd)
  if grp then
    local gk = P .. 'gc:' .. grp
    local total = tonumber(redis.call('HGET', gk, 'total') or '')
    if total then  -- (no counters: a group of an older version, or expired)
      local done = redis.call('HINCRBY', gk, 'done', 1)
      if state == 'SUCCESS' then
        redis.call('HINCRBY', gk, 'ok', 1)
      else
        redis.call('HINCRBY', gk, state == 'REVOKED' and 'revoked' or 'failed', 1)
        redis.call('HSETNX', gk, 'fail', id)
      end
      redis.call('HSET', gk, 'upd', NOW)
      if done >= total then
        local body = redis.call('HGET', gk, 'body')
        if body then
          redis.call('HDEL', gk, 'body')
          release(body)
        end
        publish(grp, redis.call('HEXISTS', gk, 'fail') == 1 and 'FAILURE' or 'SUCCESS')
      else
        publish(grp, 'PROGRESS')
      end
    end
  end
  if chn then
    local ck = P .. 'gc:' .. chn
    if redis.call('EXISTS', ck) == 1 then
      redis.call('HINCRBY', ck, 'done', 1)
      redis.call('HSET', ck, 'upd', NOW)
      publish(chn, state)
    end
  end
  if fwd == nil then fwd = redis.call('HGET', tkey(id), 'fwd') end
  if fwd then forward(id, fwd) end
end

-- Task dst replaced itself (Task.replace) with work whose result is task src: once src is
-- final, its state and result become dst's, and dst counts in its own group and chain (and
-- forwards in turn if it replaced another). Until then src keeps dst in its fwd field, and
-- settle() calls this again when src is final. Returns false if src is gone (expired).
forward = function(src, dst)
  local sk, dk = tkey(src), tkey(dst)
  local f = redis.call('HMGET', sk, 'state', 'rtype', 'result', 'tb')
  if not (f[1] and FINAL[f[1]]) then
    if f[1] then redis.call('HSET', sk, 'fwd', dst) end
    return f[1] ~= false
  end
  local d = redis.call('HMGET', dk, 'state', 'group', 'chain')
  if not d[1] or FINAL[d[1]] then return true end
  redis.call('HDEL', dk, 'body', 'rtype', 'result', 'tb')
  redis.call('HSET', dk, 'state', f[1], 'done', NOW, 'upd', NOW)
  if f[2] then redis.call('HSET', dk, 'rtype', f[2]) end
  if f[3] then redis.call('HSET', dk, 'result', f[3]) end
  if f[4] then redis.call('HSET', dk, 'tb', f[4]) end
  local pttl = redis.call('PTTL', sk)
  if pttl > 0 then redis.call('PEXPIRE', dk, pttl) end
  publish(dst, f[1])
  settle(dst, f[1], d[2], d[3])
  return true
end

-- Quarantine a task: FAILURE with the reason, body kept for `flask jobs dlq requeue`.
local function dead_letter(id, name, reason, dead_ttl)
  local rk = tkey(id)
  local f = redis.call('HMGET', rk, 'state', 'group', 'chain')
  if f[1] then
    redis.call('HSET', rk, 'state', 'FAILURE', 'rtype', 'json',
      'result', cjson.encode({exc_type = 'DeadLetteredError', exc_message = reason}),
      'reason', reason, 'done', NOW, 'upd', NOW)
    redis.call('PEXPIRE', rk, dead_ttl)
    publish(id, 'FAILURE')
    if not FINAL[f[1]] then settle(id, 'FAILURE', f[2], f[3]) end
  end
  note('task-dead-lettered', id, name, string.sub(reason, 1, 200))
  count(name, 'dead')
  redis.call('LPUSH', P .. 'dlq',
    cjson.encode({id = id, name = name or '', reason = reason, at = NOW}))
  redis.call('LTRIM', P .. 'dlq', 0, DLQ_CAP - 1)
  redis.call('HINCRBY', P .. 'stats', 'dead', 1)
end

-- Apply a batch of worker writes. ARGV[base] = count, then 9 fields each:
--   kind, id, attempt, state, rtype, result, traceback, opt, body
-- kind S = started, P = progress/custom state, F = final state (opt 'i' = ignore result; body =
-- the runtime in ms, or ''),
-- R = retry (opt = countdown ms, body = new message), L = give back unstarted (shutdown),
-- D = dead-letter (result = reason, opt = task name), X = ignored (raised Ignore: the record
-- keeps its state; opt = the task it replaced itself with, whose outcome becomes its own).
-- A write is applied only while the task is still in this worker's active hash with the same
-- attempt (the fencing token) and not final: a zombie cannot overwrite a newer attempt.
-- Refused writes are counted as stale, except ours sent twice: a batch re-sent after its reply
-- was lost (a claim sent again, or writes put back and sent again) finds its writes already
-- applied, i.e. the record still names this worker and attempt and is in the state the write
-- left it in. A zombie's write is still counted: its attempt is older, or the reaper removed
-- the record's worker.
local function apply_writes(worker, base, ttl, dead_ttl)
  local n = tonumber(ARGV[base])
  local active = P .. 'w:' .. worker .. ':active'
  local stale = 0
  local i = base + 1
  for _ = 1, n do
    local kind, id, att = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local state, rtype, result = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
    local tb, opt, body = ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
    i = i + 9
    local rk = tkey(id)
    local f = redis.call('HMGET', rk, 'state', 'group', 'chain', 'fwd', 'name', 'st')
    local cur, grp, chn, name = f[1], f[2], f[3], f[5]
    if redis.call('HGET', active, id) ~= att or not cur then
      -- Not stale: a STARTED/progress write that lost the race (flusher vs claim) to the final
      -- write of the same attempt (late, not a zombie's), or a write of ours applied already.
      local rec = cur and redis.call('HMGET', rk, 'att', 'worker')
      local ours = rec and rec[1] == att and (rec[2] == worker or kind == 'S' or kind == 'P')
      if not (ours and (FINAL[cur] and kind ~= 'R' and kind ~= 'L'
                        or kind == 'R' and cur == 'RETRY' or kind == 'L' and not FINAL[cur]
                        or kind == 'X')) then
        stale = stale + 1
      end
    elseif FINAL[cur] then
      -- revoked while it sat in this worker's prefetch buffer: drop our write, keep REVOKED
      redis.call('HDEL', active, id)
    elseif kind == 'S' or kind == 'P' then
      if kind == 'S' then
        redis.call('HSET', rk, 'state', 'STARTED', 'upd', NOW, 'st', NOW)
        publish(id, 'STARTED')
        note('task-started', id, name)
      else
        redis.call('HSET', rk, 'state', state, 'rtype', rtype, 'result', result, 'upd', NOW)
        redis.call('HSETNX', rk, 'st', NOW)
        publish(id, state)
        note('task-progress', id, name, state)
      end
      if chn then  -- the chain's current step, whose progress its status folds in
        redis.call('HSET', P .. 'gc:' .. chn, 'cur', id, 'upd', NOW)
        publish(chn, 'PROGRESS')
      end
    elseif kind == 'F' then
      redis.call('HDEL', active, id)
      if opt == 'i' then
        redis.call('HSET', rk, 'state', state, 'done', NOW, 'upd', NOW)
        redis.call('HDEL', rk, 'body', 'result', 'rtype')
      else
        redis.call('HSET', rk, 'state', state, 'rtype', rtype, 'result', result, 'tb', tb,
          'done', NOW, 'upd', NOW)
        redis.call('HDEL', rk, 'body')
      end
      redis.call('PEXPIRE', rk, ttl)
      publish(id, state)
      settle(id, state, grp, chn, f[4])
      -- the run's length as the worker measured it (a quick task's STARTED is never written)
      local runtime = tonumber(body) or (NOW - (tonumber(f[6]) or NOW))
      if not f[6] then note('task-started', id, name) end
      if state == 'SUCCESS' then
        note('task-succeeded', id, name, runtime)
        count(name, 'succeeded', runtime)
      elseif state == 'FAILURE' then
        note('task-failed', id, name, runtime)
        count(name, 'failed', runtime)
      else
        note('task-revoked', id, name, 'terminated')
        count(name, 'revoked')
      end
    elseif kind == 'R' then
      redis.call('HDEL', active, id)
      redis.call('HSET', rk, 'state', 'RETRY', 'rtype', rtype, 'result', result, 'tb', tb,
        'body', body, 'dlv', 0, 'upd', NOW)
      redis.call('HDEL', rk, 'sus')  -- it ran to its end: not what killed a worker
      local countdown = tonumber(opt) or 0
      if countdown > 0 then
        redis.call('ZADD', P .. 'delayed', NOW + countdown, id)
      else
        local qp = redis.call('HMGET', rk, 'queue', 'prio')
        push_ready(id, qp[1], qp[2], false)
      end
      publish(id, 'RETRY')  -- (no expiry while it waits: the record holds the new message)
      note('task-retried', id, name, countdown)
      count(name, 'retried')
    elseif kind == 'L' then
      redis.call('HDEL', active, id)
      redis.call('HINCRBY', rk, 'dlv', -1)
      local qp = redis.call('HMGET', rk, 'queue', 'prio')
      push_ready(id, qp[1], qp[2], true)
    elseif kind == 'D' then
      redis.call('HDEL', active, id)
      dead_letter(id, opt, result, dead_ttl)  -- (notes and counts it)
    elseif kind == 'X' then
      redis.call('HDEL', active, id)
      redis.call('HDEL', rk, 'sus', 'body')
      if opt == '' or not forward(opt, id) then  -- (its replacement is gone: expire it too)
        redis.call('PEXPIRE', rk, ttl)
      end
    end
  end
  if stale > 0 then redis.call('HINCRBY', P .. 'stats', 'stale_writes', stale) end
  return stale
end
