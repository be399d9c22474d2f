-- enqueue.lua: write the PENDING records and queue the ids of one or many tasks, atomically.
-- ARGV: prefix, result_ttl_ms, count, then 11 fields per task:
--   id, queue, prio, name, ctype, body, delay_ms (0 = now), expires_ms (0 = never), owner, group,
--   check ('1' when the caller chose the id: skip it if a live record has it)
-- A caller-chosen task id whose record is still live (not final) is skipped, so a retried
-- request that reuses its task_id does not queue the task twice. Random ids skip that check.
-- Returns the number of tasks queued.
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local queued = 0
local ready = {}   -- list key -> ids, pushed in one LPUSH per key
local woken = {}
for k = 0, n - 1 do
  local b = 4 + k * 11
  local id, queue, prio, name = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local delay, expires = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local owner, group = ARGV[b + 8], ARGV[b + 9]
  local rk = tkey(id)
  local fresh = true
  if ARGV[b + 10] == '1' then
    local cur = redis.call('HGET', rk, 'state')
    if cur and not FINAL[cur] then fresh = false elseif cur then redis.call('DEL', rk) end
  end
  if fresh then
    local fields = {'state', 'PENDING', 'name', name, 'queue', queue, 'prio', prio,
      'ctype', ARGV[b + 4], 'body', ARGV[b + 5], 'att', 0, 'dlv', 0, 'upd', NOW}
    if expires > 0 then fields[#fields + 1] = 'exp'; fields[#fields + 1] = NOW + expires end
    if owner ~= '' then fields[#fields + 1] = 'owner'; fields[#fields + 1] = owner end
    if group ~= '' then
      fields[#fields + 1] = 'group'; fields[#fields + 1] = group
      redis.call('RPUSH', P .. 'g:' .. group, id)
      redis.call('PEXPIRE', P .. 'g:' .. group, ttl + delay)
    end
    redis.call('HSET', rk, unpack(fields))
    redis.call('PEXPIRE', rk, ttl + delay)
    if delay > 0 then
      redis.call('ZADD', P .. 'delayed', NOW + delay, id)
    else
      local lk = P .. 'q:' .. queue .. ':' .. prio
      local ids = ready[lk]
      if not ids then ids = {}; ready[lk] = ids end
      ids[#ids + 1] = id
      woken[queue] = true
    end
    queued = queued + 1
  end
end
for lk, ids in pairs(ready) do redis.call('LPUSH', lk, unpack(ids)) end
for queue in pairs(woken) do redis.call('ZADD', P .. 'm:' .. queue, 0, '0') end
return queued
