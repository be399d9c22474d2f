-- standalone: enqueue.lua does not use lib.lua (the fewer Lua steps, the faster every send).
-- enqueue.lua: write the PENDING records and queue the ids of one or many tasks, atomically.
-- ARGV: prefix, result_ttl_ms, group ('' for none), check_all ('1' on a resend), count, then
--   10 fields per task: id, queue, prio, name, ctype, body, delay_ms (0 = now),
--   expires_ms (0 = never), owner, check ('1' when the caller chose the id)
-- A checked id whose record is still live (not final) is skipped, so a retried request that
-- reuses its task_id, or a resend after a lost reply, does not queue the task twice. Random ids
-- skip that check. Key names mirror flask_jobs/keys.py.
-- A task due now whose queue has an idle consumer (registered by claim.lua) is handed straight
-- to that consumer's inbox, already claimed for it, so it starts without a claim round trip.
-- Inbox payload: "<attempt> <deliveries> <#id> <#ctype> <#name>\n" .. id .. ctype .. name .. body
-- Returns the number of tasks queued.
if redis.replicate_commands then pcall(redis.replicate_commands) end  -- TIME + writes on 6.2
local P, ttl, group, check_all = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4] == '1'
local n = tonumber(ARGV[5])
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local FINAL = {SUCCESS = true, FAILURE = true, REVOKED = true}

-- Wake one idle consumer of a queue: at most one token waits in the list (BLPOP takes it).
local function wake(queue)
  local wk = P .. 'wake:' .. queue
  if redis.call('LLEN', wk) == 0 then redis.call('RPUSH', wk, '1') end
end

-- An idle consumer of the queue that is alive and has nothing waiting: its worker and inbox.
local function idle_consumer(queue)
  local ik = P .. 'idle:' .. queue
  for _ = 1, 8 do  -- each miss removes a stale entry, so this stays short
    local who = redis.call('SPOP', ik)
    if not who then return nil end
    local w, slot = string.match(who, '^(.*)|(%d+)$')
    if w and redis.call('EXISTS', P .. 'hb:' .. w) == 1 then
      local inbox = P .. 'w:' .. w .. ':in:' .. slot
      if redis.call('LLEN', inbox) == 0 then return w, inbox end
    end
  end
  return nil
end
local queued, longest = 0, 0
local members = {}
local lastk, lastq, ids = nil, nil, {}   -- consecutive ids for one list: one LPUSH
for k = 0, n - 1 do
  local b = 6 + k * 10
  local id, queue, prio = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local delay, expires, owner = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7]), ARGV[b + 8]
  local rk = P .. 't:' .. id
  local fresh = true
  if check_all or ARGV[b + 9] == '1' then
    local cur = redis.call('HGET', rk, 'state')
    if cur and not FINAL[cur] then fresh = false elseif cur then redis.call('DEL', rk) end
  end
  if fresh then
    local name, ctype, body = ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
    local w, inbox
    if delay == 0 then w, inbox = idle_consumer(queue) end
    if w then
      redis.call('HSET', rk, 'state', 'PENDING', 'name', name, 'queue', queue, 'prio', prio,
        'ctype', ctype, 'body', body, 'upd', NOW, 'att', 1, 'dlv', 1, 'worker', w)
      redis.call('HSET', P .. 'w:' .. w .. ':active', id, 1)
      redis.call('RPUSH', inbox, '1 1 ' .. #id .. ' ' .. #ctype .. ' ' .. #name .. '\n'
        .. id .. ctype .. name .. body)
    else
      redis.call('HSET', rk, 'state', 'PENDING', 'name', name, 'queue', queue, 'prio', prio,
        'ctype', ctype, 'body', body, 'upd', NOW)
    end
    if expires > 0 then redis.call('HSET', rk, 'exp', NOW + expires) end
    if owner ~= '' then redis.call('HSET', rk, 'owner', owner) end
    if group ~= '' then
      redis.call('HSET', rk, 'group', group)
      members[#members + 1] = id
    end
    if delay > longest then longest = delay end
    if w then
      -- claimed: the record lives until its final state (as claim.lua PERSISTs it)
    elseif delay > 0 then
      redis.call('PEXPIRE', rk, ttl + delay)
      redis.call('ZADD', P .. 'delayed', NOW + delay, id)
    else
      redis.call('PEXPIRE', rk, ttl)
      local lk = P .. 'q:' .. queue .. ':' .. prio
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
if #members > 0 then
  local gk = P .. 'g:' .. group
  redis.call('RPUSH', gk, unpack(members))
  if redis.call('PTTL', gk) < ttl + longest then redis.call('PEXPIRE', gk, ttl + longest) end
end
return queued
