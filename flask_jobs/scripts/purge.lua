-- purge.lua: discard the ready tasks of one queue list, at most `limit` of them per call (so a
-- long backlog never blocks Redis for long; the caller calls again while some are left).
-- KEYS[1]: the ready list (q:<queue>:<prio>).
-- ARGV: prefix, queue, prio, result_ttl_ms, limit. Returns {discarded, ids taken off the list}.
-- A discarded task becomes REVOKED with reason "purged" (a status page ends, get() raises),
-- as revoke.lua does for a queued task; ids whose record is already final or gone (revoked,
-- expired) are dropped from the list without counting.
local queue, prio, ttl, limit = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local lk = KEYS[1]
local ids = redis.call('LRANGE', lk, 0, limit - 1)
if #ids == 0 then return {0, 0} end
redis.call('LTRIM', lk, #ids, -1)
local discarded = 0
for _, id in ipairs(ids) do
  local rk = tkey(id)
  local f = redis.call('HMGET', rk, 'state', 'group', 'chain')
  local state = f[1]
  if state and not FINAL[state] then
    redis.call('HSET', rk, 'state', 'REVOKED', 'reason', 'purged', 'done', NOW, 'upd', NOW)
    redis.call('HDEL', rk, 'body')
    redis.call('PEXPIRE', rk, ttl)
    publish(id, 'REVOKED')
    settle(id, 'REVOKED', f[2], f[3])
    discarded = discarded + 1
  end
end
if discarded > 0 then redis.call('HINCRBY', P .. 'stats', 'purged', discarded) end
return {discarded, #ids}
