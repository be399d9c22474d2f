-- enqueue.lua: write the PENDING records and queue the ids of one or many tasks, atomically.
-- ARGV: prefix, result_ttl_ms, count, then 10 fields per task:
--   id, queue, prio, name, ctype, body, delay_ms (0 = now), expires_ms (0 = never), owner, group
-- A task id whose record is still live (not final) is skipped, so a retried request that reuses
-- its task_id does not queue the task twice. Returns the number of tasks queued.
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local queued = 0
local woken = {}
for k = 0, n - 1 do
  local b = 4 + k * 10
  local id, queue, prio, name = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local ctype, body = ARGV[b + 4], ARGV[b + 5]
  local delay, expires = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local owner, group = ARGV[b + 8], ARGV[b + 9]
  local rk = tkey(id)
  local cur = redis.call('HGET', rk, 'state')
  if not cur or FINAL[cur] then
    redis.call('DEL', rk)
    redis.call('HSET', rk, 'state', 'PENDING', 'name', name, 'queue', queue, 'prio', prio,
      'ctype', ctype, 'body', body, 'att', 0, 'dlv', 0, 'upd', NOW)
    if expires > 0 then redis.call('HSET', rk, 'exp', NOW + expires) end
    if owner ~= '' then redis.call('HSET', rk, 'owner', owner) end
    if group ~= '' then
      redis.call('HSET', rk, 'group', group)
      redis.call('RPUSH', P .. 'g:' .. group, id)
      redis.call('PEXPIRE', P .. 'g:' .. group, ttl + delay)
    end
    redis.call('PEXPIRE', rk, ttl + delay)
    if delay > 0 then
      redis.call('ZADD', P .. 'delayed', NOW + delay, id)
    else
      redis.call('LPUSH', P .. 'q:' .. queue .. ':' .. prio, id)
      woken[queue] = true
    end
    queued = queued + 1
  end
end
for queue in pairs(woken) do redis.call('ZADD', P .. 'm:' .. queue, 0, '0') end
return queued
