-- standalone: enqueue.lua does not use lib.lua (the fewer Lua steps, the faster every send).
-- enqueue.lua: write the PENDING records and queue the ids of one or many tasks, atomically.
-- KEYS[1]: the record of the call's first task (t:<id>); every key shares its prefix (and slot).
-- ARGV: prefix, result_ttl_ms, group ('' for none), check_all ('1' on a resend),
--   group_size (a group sent here: its member ids go on g:<group> and its counters gc:<group>
--     get this total; 0: the members are listed already, by chord.lua or a group of chains),
--   nshapes, then 10 fields per shape (what messages of a call usually share):
--     queue, prio, name, ctype, delay_ms (0 = now), expires_ms (0 = never), owner,
--     check ('1' when the caller chose the id), dedup key ('' none), dedup ttl ms
--   count, then 3 fields per task: id, shape number (1-based), body
-- A task whose shape has a dedup key is queued only if no task holds that key (dd:<key>, set
-- for the ttl); otherwise the call returns {0, the id that holds it} instead of a count.
-- A checked id whose record is still live (not final) is skipped, so a retried request that
-- reuses its task_id, or a resend after a lost reply, does not queue the task twice. Random ids
-- skip that check. A checked id with a placeholder record (a chain's task, see
-- placeholders.lua) takes it over (keeping its chain and group fields), unless it was revoked
-- or failed meanwhile: then it is skipped.
-- Key names mirror flask_jobs/keys.py.
-- A task due now whose queue has an idle consumer (registered by claim.lua) is handed straight
-- to that consumer's inbox, already claimed for it, so it starts without a claim round trip.
-- Inbox payload: "<attempt> <deliveries> <#id> <#ctype> <#name>\n" .. id .. ctype .. name .. body
-- A queued record has no expiry: it holds the message, which must not vanish while it waits
-- (and a PEXPIRE per task is a third of this script's work). It gets one at its final state.
-- Returns the number of tasks queued.
if redis.replicate_commands then pcall(redis.replicate_commands) end  -- TIME + writes on 6.2
local P, ttl, group, check_all = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4] == '1'
local group_size = tonumber(ARGV[5])
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local FINAL = {SUCCESS = true, FAILURE = true, REVOKED = true}

-- Wake one idle consumer of a queue: at most one token waits in the list (BLPOP takes it).
local function wake(queue)
  local wk = P .. 'wake:' .. queue
  if redis.call('LLEN', wk) == 0 then redis.call('RPUSH', wk, '1') end
end

local nobody_idle = {}  -- queue -> true once its idle set came up empty in this call
-- An idle consumer of the queue that is alive and has nothing waiting: its worker, inbox, slot.
-- A consumer listening to several queues is in the idle set of each. Once handed a task (field
-- <slot>:h of w:<worker>:claims, cleared by its next claim) it is busy whatever its other
-- entries say: those are stale, removed here as they come up, so a busy consumer is never handed
-- a second task that would wait behind the first while another consumer is idle.
local function idle_consumer(queue)
  local ik = P .. 'idle:' .. queue
  for _ = 1, 8 do  -- each miss removes a stale entry, so this stays short
    local who = redis.call('SPOP', ik)
    if not who then break end
    local w, slot = string.match(who, '^(.*)|(%d+)$')
    if w and redis.call('EXISTS', P .. 'hb:' .. w) == 1
        and redis.call('HEXISTS', P .. 'w:' .. w .. ':claims', slot .. ':h') == 0 then
      local inbox = P .. 'w:' .. w .. ':in:' .. slot
      if redis.call('LLEN', inbox) == 0 then return w, inbox, slot end
    end
  end
  nobody_idle[queue] = true
  return nil
end

local ev_len  -- the events stream's length (conf 'events'), read at the first hand-over
local limited = {}  -- name -> whether it has a rate limit (then only a claim may start it)
local function rate_limited(name)
  local v = limited[name]
  if v == nil then
    v = redis.call('HEXISTS', P .. 'rates', name) == 1
    limited[name] = v
  end
  return v
end

local shapes = {}
local nshapes = tonumber(ARGV[6])
for s = 1, nshapes do
  local b = 7 + (s - 1) * 10
  shapes[s] = {queue = ARGV[b], prio = ARGV[b + 1], name = ARGV[b + 2], ctype = ARGV[b + 3],
    delay = tonumber(ARGV[b + 4]), expires = tonumber(ARGV[b + 5]), owner = ARGV[b + 6],
    check = check_all or ARGV[b + 7] == '1', dedup = ARGV[b + 8],
    dedup_ttl = tonumber(ARGV[b + 9]), list = P .. 'q:' .. ARGV[b] .. ':' .. ARGV[b + 1]}
end
local base = 7 + nshapes * 10
local n = tonumber(ARGV[base])

local queued, longest = 0, 0
local members = {}
local lastk, lastq, ids = nil, nil, {}   -- consecutive ids for one list: one LPUSH
for k = 0, n - 1 do
  local b = base + 1 + k * 3
  local id, sh, body = ARGV[b], shapes[tonumber(ARGV[b + 1])], ARGV[b + 2]
  local rk = P .. 't:' .. id
  local fresh = true
  if sh.dedup ~= '' then
    local dk = P .. 'dd:' .. sh.dedup
    local holder = redis.call('GET', dk)
    if holder then
      return {0, holder}  -- (dedup keys come with one task per call)
    end
    redis.call('SET', dk, id, 'PX', sh.dedup_ttl)
  end
  if sh.check then
    local cur = redis.call('HMGET', rk, 'state', 'ph')
    if cur[2] then
      -- a placeholder written when its chain was sent (placeholders.lua): taken over, unless
      -- it was revoked or failed before the chain got here
      if cur[1] == 'PENDING' then
        redis.call('HDEL', rk, 'ph')
        redis.call('PERSIST', rk)  -- (a queued record holds its message: no expiry)
      else
        fresh = false
      end
    elseif cur[1] and not FINAL[cur[1]] then
      fresh = false
    elseif cur[1] then
      redis.call('DEL', rk)
    end
  end
  if fresh then
    local queue, delay = sh.queue, sh.delay
    local w, inbox, slot
    if delay == 0 and not nobody_idle[queue] then
      -- (the cheap test first: most sends find nobody idle, or busy workers)
      if redis.call('SCARD', P .. 'idle:' .. queue) == 0 then
        nobody_idle[queue] = true
      elseif not rate_limited(sh.name) then
        w, inbox, slot = idle_consumer(queue)
      end
    end
    if group ~= '' then
      redis.call('HSET', rk, 'state', 'PENDING', 'name', sh.name, 'queue', queue, 'prio', sh.prio,
        'ctype', sh.ctype, 'body', body, 'upd', NOW, 'group', group)
      members[#members + 1] = id
    else
      redis.call('HSET', rk, 'state', 'PENDING', 'name', sh.name, 'queue', queue, 'prio', sh.prio,
        'ctype', sh.ctype, 'body', body, 'upd', NOW)
    end
    if sh.expires > 0 then redis.call('HSET', rk, 'exp', NOW + sh.expires) end
    if sh.owner ~= '' then redis.call('HSET', rk, 'owner', sh.owner) end
    if delay > longest then longest = delay end
    if w then
      -- claimed for the idle consumer (as claim.lua claims)
      redis.call('HSET', rk, 'att', 1, 'dlv', 1, 'worker', w)
      redis.call('HSET', P .. 'w:' .. w .. ':active', id, 1)
      redis.call('RPUSH', inbox, '1 1 ' .. #id .. ' ' .. #sh.ctype .. ' ' .. #sh.name .. '\n'
        .. id .. sh.ctype .. sh.name .. body)
      -- Lost replies: note the hand-over for that consumer's next claim, which returns it again
      -- if the reply of the BLPOP that popped it never arrived (see claim.lua, w:<w>:claims).
      redis.call('HSET', P .. 'w:' .. w .. ':claims', slot .. ':h', id)
      -- Its task-received event (a claim adds the others'; see note() in lib.lua). Only on
      -- this path, which hands a task to an idle worker: the plain send pays nothing.
      if ev_len == nil then
        ev_len = tonumber(redis.call('HGET', P .. 'conf', 'events') or '0') or 0
      end
      if ev_len > 0 then
        redis.call('XADD', P .. 'events', 'MAXLEN', '~', ev_len, '*', 'w', w,
          'e', 'task-received\t' .. id .. '\t' .. sh.name .. '\t')
      end
    elseif delay > 0 then
      redis.call('ZADD', P .. 'delayed', NOW + delay, id)
    else
      local lk = sh.list
      if lk ~= lastk then
        if lastk then
          redis.call('LPUSH', lastk, unpack(ids))
          wake(lastq)
        end
        lastk, lastq, ids = lk, queue, {}
      end
      ids[#ids + 1] = id
    end
    queued = queued + 1
  end
end
if lastk then
  redis.call('LPUSH', lastk, unpack(ids))
  wake(lastq)
end
if #members > 0 and group_size > 0 then
  local gk, ck = P .. 'g:' .. group, P .. 'gc:' .. group
  redis.call('RPUSH', gk, unpack(members))
  redis.call('HSETNX', ck, 'total', group_size)
  redis.call('HSETNX', ck, 'upd', NOW)
  redis.call('HSETNX', ck, 'at', NOW)
  for _, sh in ipairs(shapes) do  -- the members' owner, for the group's status URL
    if sh.owner ~= '' and redis.call('HSETNX', ck, 'owner', sh.owner) == 0
        and redis.call('HGET', ck, 'owner') ~= sh.owner then
      redis.call('HSET', ck, 'owner', '\0mixed')  -- (members of several owners: nobody's)
    end
  end
  if redis.call('PTTL', gk) < ttl + longest then
    redis.call('PEXPIRE', gk, ttl + longest)
    redis.call('PEXPIRE', ck, ttl + longest)
  end
end
return queued
