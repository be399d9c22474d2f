-- reap.lua: give the tasks of dead workers back to their queues.
-- KEYS[1]: the set of registered workers (workers); every key shares its prefix (and slot).
-- ARGV: prefix, caller, lock_ms, self ('' or a worker name to give back unconditionally, used by
-- a worker's own cold shutdown).
-- A worker is dead when its heartbeat key (PX = orphan timeout, renewed by a thread that task code
-- cannot starve) has expired on this server's clock. Only one caller per lock period scans.
-- Which task killed a dead worker? If it held one task, that one (it was running, or had finished
-- with its outcome unsent): it keeps the delivery it was counted at claim. If it held several
-- (a prefetched batch, or one per thread), nothing says which one ran, except a suspect: a
-- suspect only runs alone in its process (claim.lua, worker/gate.py), so it keeps its count too.
-- The others are given back uncounted and become suspects. So a task that kills its worker
-- every time is counted from its next delivery on and reaches JOBS_MAX_DELIVERIES, and its
-- innocent neighbours never do. (The prefork parent knows which task its child ran and gives
-- the others back itself; a worker's own cold shutdown counts everything as before.)
-- Returns the number of tasks given back.
local caller, lock_ms, self_name = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local given = 0
local function give_back(w, dead)
  local active = P .. 'w:' .. w .. ':active'
  local items = redis.call('HGETALL', active)
  local several = dead and #items > 2
  for i = 1, #items, 2 do
    local id, att = items[i], items[i + 1]
    local f = redis.call('HMGET', tkey(id), 'state', 'att', 'queue', 'prio', 'sus')
    if f[1] and not FINAL[f[1]] and f[2] == att then
      if several and not f[5] then
        redis.call('HSET', tkey(id), 'state', 'PENDING', 'upd', NOW, 'sus', '1')
        redis.call('HINCRBY', tkey(id), 'dlv', -1)
      else
        redis.call('HSET', tkey(id), 'state', 'PENDING', 'upd', NOW)
      end
      redis.call('HDEL', tkey(id), 'worker', 'result', 'rtype', 'st')
      push_ready(id, f[3], f[4], true)
      publish(id, 'PENDING')
      given = given + 1
    end
  end
  redis.call('DEL', active)
  -- Idle registrations and inboxes (what sat in an inbox was in the active hash, given back
  -- above).
  local reg = P .. 'w:' .. w .. ':idle'
  for _, e in ipairs(redis.call('SMEMBERS', reg)) do
    local ik, member, inbox = string.match(e, '^(.-)\n(.-)\n(.*)$')
    if ik then
      redis.call('SREM', ik, member)
      redis.call('DEL', inbox)
    end
  end
  redis.call('DEL', reg)
  -- The consumers' claim records (claim.lua): nothing left to return again.
  redis.call('DEL', P .. 'w:' .. w .. ':claims')
  redis.call('SREM', P .. 'workers', w)
end
if self_name ~= '' then
  give_back(self_name, false)
  redis.call('DEL', P .. 'hb:' .. self_name)
end
if lock_ms > 0 and redis.call('SET', P .. 'lock:reaper', caller, 'NX', 'PX', lock_ms) then
  for _, w in ipairs(redis.call('SMEMBERS', P .. 'workers')) do
    if redis.call('EXISTS', P .. 'hb:' .. w) == 0 then give_back(w, true) end
  end
end
if given > 0 then redis.call('HINCRBY', P .. 'stats', 'reaped', given) end
return given
