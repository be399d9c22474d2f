-- placeholders.lua: a chain was sent. Write a PENDING record for each of its tasks, so the
-- chain's status URL (its last task's) reads PENDING from the start, not "unknown" until the
-- chain gets there, and the chain's counters (gc:<chain>: total, done, last; each record names the
-- chain, so its final state counts there and its progress shows as the chain's current step).
-- A placeholder (field ph) holds no message: enqueue.lua takes it over when the task is sent,
-- unless it was revoked or failed (fail_links.lua) before that. It expires like a result, in
-- case the chain never gets there (e.g. its first task was revoked).
-- KEYS[1]: the record of the first id (t:<id>); the others share its prefix (and slot).
-- ARGV: prefix, result_ttl_ms, owner ('' for none), chain ('' for none), then id, name, group
--   ('' for none: the group a chain's last task counts in) triples.
-- Returns the number of records written (an id that has a record already is left alone).
local ttl, owner, chain = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local written = 0
for i = 5, #ARGV, 3 do
  local rk = tkey(ARGV[i])
  if redis.call('EXISTS', rk) == 0 then
    redis.call('HSET', rk, 'state', 'PENDING', 'name', ARGV[i + 1], 'ph', '1', 'upd', NOW)
    if owner ~= '' then redis.call('HSET', rk, 'owner', owner) end
    if chain ~= '' then redis.call('HSET', rk, 'chain', chain) end
    if ARGV[i + 2] ~= '' then redis.call('HSET', rk, 'group', ARGV[i + 2]) end
    redis.call('PEXPIRE', rk, ttl)
    written = written + 1
  end
end
if chain ~= '' then
  local ck = P .. 'gc:' .. chain
  redis.call('HSET', ck, 'total', (#ARGV - 4) / 3, 'done', 0, 'upd', NOW, 'at', NOW,
    'last', ARGV[#ARGV - 2])  -- (the chain's result: its status follows the whole chain)
  if owner ~= '' then redis.call('HSET', ck, 'owner', owner) end
  redis.call('PEXPIRE', ck, ttl)
end
return written
