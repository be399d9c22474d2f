-- reap.lua: give the tasks of dead workers back to their queues.
-- ARGV: prefix, caller, lock_ms, self ('' or a worker name to give back unconditionally, used by
-- a worker's own cold shutdown).
-- A worker is dead when its heartbeat key (PX = orphan timeout, renewed by a thread that task code
-- cannot starve) has expired on this server's clock. Only one caller per lock period scans.
-- Returns the number of tasks given back.
local caller, lock_ms, self_name = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local given = 0
local function give_back(w)
  local active = P .. 'w:' .. w .. ':active'
  local items = redis.call('HGETALL', active)
  for i = 1, #items, 2 do
    local id, att = items[i], items[i + 1]
    local f = redis.call('HMGET', tkey(id), 'state', 'att', 'queue', 'prio')
    if f[1] and not FINAL[f[1]] and f[2] == att then
      redis.call('HSET', tkey(id), 'state', 'PENDING', 'upd', NOW)
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
  give_back(self_name)
  redis.call('DEL', P .. 'hb:' .. self_name)
end
if lock_ms > 0 and redis.call('SET', P .. 'lock:reaper', caller, 'NX', 'PX', lock_ms) then
  for _, w in ipairs(redis.call('SMEMBERS', P .. 'workers')) do
    if redis.call('EXISTS', P .. 'hb:' .. w) == 0 then give_back(w) end
  end
end
if given > 0 then redis.call('HINCRBY', P .. 'stats', 'reaped', given) end
return given
