-- placeholders.lua: a chain was sent. Write a PENDING record for each task after its first, so
-- the chain's status URL (its last task's) reads PENDING from the start, not "unknown" until
-- the chain gets there. A placeholder (field ph) holds no message: enqueue.lua replaces it when
-- the task is sent, unless it was revoked or failed (fail_links.lua) before that. It expires
-- like a result, in case the chain never gets there (e.g. its first task was revoked).
-- KEYS[1]: the record of the first id (t:<id>); the others share its prefix (and slot).
-- ARGV: prefix, result_ttl_ms, owner ('' for none), then id, name pairs.
-- Returns the number of records written (an id that has a record already is left alone).
local ttl, owner = tonumber(ARGV[2]), ARGV[3]
local written = 0
for i = 4, #ARGV, 2 do
  local rk = tkey(ARGV[i])
  if redis.call('EXISTS', rk) == 0 then
    redis.call('HSET', rk, 'state', 'PENDING', 'name', ARGV[i + 1], 'ph', '1', 'upd', NOW)
    if owner ~= '' then redis.call('HSET', rk, 'owner', owner) end
    redis.call('PEXPIRE', rk, ttl)
    written = written + 1
  end
end
return written
