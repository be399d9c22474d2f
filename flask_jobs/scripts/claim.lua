-- claim.lua: acknowledge a batch of writes, move due delayed tasks to their queues, and claim up
-- to N ready tasks for one worker, in one round trip.
-- KEYS[1]: the worker's active hash (w:<worker>:active); every key shares its prefix (and slot).
-- ARGV: prefix, worker, n, max_deliveries, result_ttl_ms, dead_ttl_ms, slot, idle, seq,
--       nqueues, queue..., then the write batch (apply_writes in lib.lua).
-- n counts the tasks the consumer can start now (1) plus a lookahead; it is cut to 1 while another
-- consumer of these queues is idle (fair dispatch).
-- slot names the calling consumer's inbox (w:<worker>:in:<slot>); idle = '1' registers it as
-- idle on its queues when nothing is claimed, so enqueue.lua hands the next task straight to
-- its inbox (the consumer blocks on it) instead of the ready list.
-- seq makes a claim idempotent when its reply is lost ('' = no record, no replay). The consumer
-- numbers its claims and sends a claim again with the same number when it may not have got the
-- reply (see Consumer in worker/consumer.py). Field <slot> of w:<worker>:claims records the last
-- claim: its seq and every id (with attempt) it returned. A claim with the recorded seq first
-- returns again those still in the active hash with that attempt and not final, and the task
-- enqueue.lua handed over since (field <slot>:h, whose BLPOP reply may be the one lost), unless
-- it is still in the inbox; then it claims more for the rest of n.
-- Suspects (field sus, set by reap.lua) run alone: one is claimed only as the whole claim, and
-- only while this worker holds no other suspect; otherwise it goes back to the front of its list
-- and the claim ends there. The caller runs it with nothing else running in its process, so if
-- the process dies, the reaper knows it was the one running.
-- Returns {claimed, more, next_due_ms, handed, suspect, then `handed` inbox payloads (see
-- enqueue.lua), then 6 fields per claimed task (returned again first): id, attempt, deliveries,
-- ctype, body, name}. more = 1 when the scan budget ran out (e.g. a long run of expired tasks)
-- and the caller should claim again at once instead of sleeping. next_due_ms = -1 when nothing
-- is delayed. suspect = 1 when the one task claimed is a suspect. Then come 3 fields per task
-- found revoked (while queued, or expired just now) and dropped: id, name, '1' if expired; their
-- number is the header's sixth field, so the worker can send task_revoked for them.
local worker, n, max_dlv = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl, dead_ttl, slot, nq = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[10])
local seq = ARGV[9]
local stale = apply_writes(worker, 11 + nq, ttl, dead_ttl)
local active = KEYS[1]

-- Whatever was handed to this consumer while it was idle is already claimed: take it first.
local member = worker .. '|' .. slot
local inbox = P .. 'w:' .. worker .. ':in:' .. slot
for qi = 1, nq do redis.call('SREM', P .. 'idle:' .. ARGV[10 + qi], member) end
-- Fair dispatch: claim more than this consumer can start now (a lookahead, which would wait
-- behind its running task) only while no other consumer of these queues is idle: otherwise
-- those tasks are theirs to start at once.
if n > 1 then
  for qi = 1, nq do
    if redis.call('SCARD', P .. 'idle:' .. ARGV[10 + qi]) > 0 then n = 1 break end
  end
end
local handed = {}
local returned = {seq}  -- this claim's record: seq, then id, attempt of each task returned
local in_inbox = {}
for _, item in ipairs(redis.call('LRANGE', inbox, 0, -1)) do
  if item ~= '' then  -- '' is a bare wake-up (shutdown)
    handed[#handed + 1] = item
    -- header "<att> <dlv> <#id> <#ctype> <#name>\n", then the id (see enqueue.lua)
    local nl = string.find(item, '\n', 1, true)
    local att, nid = string.match(string.sub(item, 1, nl - 1), '^(%d+) %d+ (%d+) ')
    local id = string.sub(item, nl + 1, nl + tonumber(nid))
    in_inbox[id] = true
    returned[#returned + 1] = id
    returned[#returned + 1] = att
  end
end
redis.call('DEL', inbox)

-- A claim sent again (same seq): what the lost reply carried, and a hand-over whose BLPOP reply
-- was lost, come back first (6 fields each, counted as claimed).
local replayed = {}
local suspect = 0
if seq ~= '' then
  local claims = P .. 'w:' .. worker .. ':claims'
  local rec = redis.call('HMGET', claims, slot, slot .. ':h')
  if rec[1] then
    local last = cjson.decode(rec[1])
    if last[1] == seq then
      local candidates = {}
      for i = 2, #last, 2 do candidates[#candidates + 1] = {last[i], last[i + 1]} end
      if rec[2] then candidates[#candidates + 1] = {rec[2], redis.call('HGET', active, rec[2])} end
      for _, c in ipairs(candidates) do
        local id, att = c[1], c[2]
        if att and not in_inbox[id] and redis.call('HGET', active, id) == att then
          in_inbox[id] = true  -- (no id twice)
          local f = redis.call('HMGET', tkey(id), 'state', 'att', 'dlv', 'ctype', 'body', 'name',
            'sus')
          if f[1] and not FINAL[f[1]] and f[2] == att then
            if f[7] then suspect = 1 end  -- (claimed alone, so returned alone)
            local k = #replayed
            replayed[k + 1], replayed[k + 2], replayed[k + 3] = id, att, f[3] or '1'
            replayed[k + 4], replayed[k + 5], replayed[k + 6] = f[4] or '', f[5] or '', f[6] or ''
            returned[#returned + 1] = id
            returned[#returned + 1] = att
          elseif not f[1] or FINAL[f[1]] then
            redis.call('HDEL', active, id)  -- revoked meanwhile: nobody will write for it
          end
        end
      end
    end
  end
  if rec[2] then redis.call('HDEL', claims, slot .. ':h') end
end
n = suspect == 1 and 0 or math.max(0, n - #handed - #replayed / 6)

-- Whether this worker holds a suspect already (rare: read only when a suspect is next).
local function holds_suspect()
  for _, id in ipairs(redis.call('HKEYS', active)) do
    if redis.call('HEXISTS', tkey(id), 'sus') == 1 then return true end
  end
  return false
end

-- Due delayed tasks go to the tail of their queue (bounded per call; the rest next time).
local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', NOW, 'LIMIT', 0, 500)
for _, id in ipairs(due) do
  redis.call('ZREM', P .. 'delayed', id)
  local f = redis.call('HMGET', tkey(id), 'state', 'queue', 'prio')
  if f[1] and not FINAL[f[1]] then push_ready(id, f[2], f[3], false) end
end

-- Rate limits (Task.rate_limit) hold over all workers: GCRA on this server's clock. A task
-- that comes before its name's next free slot takes that slot (field rls) and waits in the
-- delayed set until then; the slot after it is reserved for the next one.
local intervals = {}
local function interval_of(name)
  local v = intervals[name]
  if v == nil then
    v = tonumber(redis.call('HGET', P .. 'rates', name) or '') or false
    intervals[name] = v
  end
  return v
end
local function rate_ok(id, rk, name, slot)
  local interval = interval_of(name)
  if not interval or interval <= 0 then return true end
  if slot then
    redis.call('HDEL', rk, 'rls')
    return true  -- back at the slot it reserved
  end
  local key = P .. 'rl:' .. name
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat <= NOW then
    redis.call('SET', key, math.floor(NOW + interval), 'PX', math.floor(interval) + 60000)
    return true
  end
  local nxt = math.floor(tat + interval)
  redis.call('SET', key, nxt, 'PX', nxt - NOW + 60000)
  redis.call('HSET', rk, 'rls', tat)
  redis.call('ZADD', P .. 'delayed', tat, id)
  return false
end

local out = {0, 0, -1, #handed, 0, 0}
local dropped = {}
local function drop(id, name, expired)
  local k = #dropped
  dropped[k + 1], dropped[k + 2], dropped[k + 3] = id, name or '', expired
end
for _, item in ipairs(handed) do out[#out + 1] = item end
for _, v in ipairs(replayed) do out[#out + 1] = v end
local claimed, more = 0, 0
local held = #handed + #replayed / 6
local stop = false    -- a suspect ended the claim
local waiting = false -- ... and must wait for this worker's other suspect to finish
-- Expired or revoked ids are dropped cheaply but still bounded per call, so a backlog of
-- thousands of them cannot make one call slow, and fresh tasks behind them still flow.
local budget = n + 1000
for qi = 1, nq do
  local queue = ARGV[10 + qi]
  for prio = 9, 0, -1 do
    local lk = P .. 'q:' .. queue .. ':' .. prio
    while claimed < n and budget > 0 and not stop do
      local id = redis.call('RPOP', lk)
      if not id then break end
      budget = budget - 1
      local rk = tkey(id)
      local f = redis.call('HMGET', rk, 'state', 'exp', 'ctype', 'body', 'name', 'rls', 'dlv', 'att',
        'sus', 'group', 'chain')
      local state = f[1]
      if not state then
        dead_letter(id, '', 'record missing (deleted before it ran)', dead_ttl)
      elseif FINAL[state] then
        -- revoked while queued, or finished by an earlier delivery: nothing to run
        if state == 'REVOKED' then
          drop(id, f[5], '')
        end
      elseif f[2] and tonumber(f[2]) <= NOW then
        redis.call('HSET', rk, 'state', 'REVOKED', 'reason', 'expired', 'done', NOW, 'upd', NOW)
        redis.call('HDEL', rk, 'body')
        redis.call('PEXPIRE', rk, ttl)
        redis.call('HINCRBY', P .. 'stats', 'expired', 1)
        note('task-expired', id, f[5])
        count(f[5], 'expired')
        publish(id, 'REVOKED')
        settle(id, 'REVOKED', f[10], f[11])
        drop(id, f[5], '1')
      elseif f[9] and (claimed > 0 or held > 0 or holds_suspect()) then
        -- a suspect runs alone: back to the front; this claim ends before it
        redis.call('RPUSH', lk, id)
        stop, waiting = true, claimed == 0 and held == 0
      elseif not rate_ok(id, rk, f[5], f[6]) then
        -- rate limited: delayed until its slot
      else
        local dlv = (tonumber(f[7]) or 0) + 1
        if dlv > max_dlv then
          redis.call('HSET', rk, 'dlv', dlv)
          dead_letter(id, f[5], 'delivered ' .. (dlv - 1) .. ' times without finishing', dead_ttl)
        else
          -- one write for the delivery count, the attempt (fencing token) and the owner; the
          -- record has no expiry until its final state (enqueue.lua)
          local att = (tonumber(f[8]) or 0) + 1
          redis.call('HSET', rk, 'dlv', dlv, 'att', att, 'worker', worker)
          redis.call('HSET', active, id, att)
          returned[#returned + 1] = id
          returned[#returned + 1] = tostring(att)
          out[#out + 1] = id
          out[#out + 1] = att
          out[#out + 1] = dlv
          out[#out + 1] = f[3]
          out[#out + 1] = f[4]
          out[#out + 1] = f[5]
          note('task-received', id, f[5])
          claimed = claimed + 1
          if f[9] then suspect, stop = 1, true end
        end
      end
    end
    if claimed >= n or budget <= 0 or stop then break end
  end
  if stop then
    -- more waiting: wake another idle worker, unless the suspect waits for one of ours (a
    -- wake-up would only bring this worker back to it at once)
    if not waiting then wake(queue) end
    break
  end
  if claimed >= n then
    -- probably more waiting: wake another idle worker
    if n > 0 then wake(queue) end
    break
  end
  if budget <= 0 then more = 1 break end
end
if seq ~= '' then
  redis.call('HSET', P .. 'w:' .. worker .. ':claims', slot, cjson.encode(returned))
end
out[1], out[2], out[5], out[6] = claimed + #replayed / 6, more, suspect, #dropped / 3
for _, v in ipairs(dropped) do out[#out + 1] = v end
if out[1] == 0 and more == 0 and #handed == 0 and ARGV[8] == '1' then
  -- Nothing to do: register as idle, atomically with finding every queue empty, so no task
  -- queued from now on can be missed (enqueue hands it over, or a wake token says look again).
  local reg = P .. 'w:' .. worker .. ':idle'
  for qi = 1, nq do
    local ik = P .. 'idle:' .. ARGV[10 + qi]
    redis.call('SADD', ik, member)
    redis.call('SADD', reg, ik .. '\n' .. member .. '\n' .. inbox)
  end
end
local first = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
if first[2] then out[3] = math.max(0, tonumber(first[2]) - NOW) end
flush(worker)
return out
