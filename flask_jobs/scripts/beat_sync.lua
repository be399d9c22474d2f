-- beat_sync.lua: write periodic task definitions, keeping the run state of unchanged ones.
-- KEYS[1]: beat:names
-- ARGV: prefix, source ('config': the whole configuration, read when a beat starts; 'api': one
--   entry added at run time), count, then 3 fields per entry: name, definition (canonical
--   JSON), next (ms: its first run from now, used when the entry is new or changed)
-- A new entry is created; one whose definition differs gets the new definition and next run
-- (a changed schedule is computed afresh); an unchanged one keeps its next and last runs, run
-- count and pause. With source 'config', entries of an earlier configuration that this one
-- lacks are removed; entries added at run time (source 'api') stay until removed.
-- Returns the names touched, each with a sign: '+' created, '~' changed, '-' removed.
local src, n = ARGV[2], tonumber(ARGV[3])
local names, due = P .. 'beat:names', P .. 'beat:due'
local seen, out = {}, {}
for i = 0, n - 1 do
  local name, def, nxt = ARGV[4 + i * 3], ARGV[5 + i * 3], ARGV[6 + i * 3]
  local ek = P .. 'beat:e:' .. name
  seen[name] = true
  local f = redis.call('HMGET', ek, 'def', 'src', 'paused')
  if f[1] ~= def or f[2] ~= src then
    out[#out + 1] = (f[1] and '~' or '+') .. name
    redis.call('HSET', ek, 'def', def, 'src', src, 'next', nxt)
    if not f[1] then redis.call('HSET', ek, 'total', 0, 'paused', 0) end
    redis.call('SADD', names, name)
    if f[3] ~= '1' then redis.call('ZADD', due, tonumber(nxt), name) end
  end
end
if src == 'config' then
  for _, name in ipairs(redis.call('SMEMBERS', names)) do
    local ek = P .. 'beat:e:' .. name
    if not seen[name] and redis.call('HGET', ek, 'src') ~= 'api' then
      redis.call('DEL', ek)
      redis.call('ZREM', due, name)
      redis.call('SREM', names, name)
      out[#out + 1] = '-' .. name
    end
  end
end
return out
