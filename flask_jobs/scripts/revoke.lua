-- revoke.lua: cancel a task. A queued or delayed task becomes REVOKED at once (workers skip it);
-- a running one is flagged, and the caller broadcasts to workers when terminate is asked.
-- KEYS[1]: the task record (t:<id>).
-- ARGV: prefix, id, result_ttl_ms, reason. Returns the state after the call, or false if unknown.
local id, ttl, reason = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local rk = KEYS[1]
local f = redis.call('HMGET', rk, 'state', 'group', 'chain', 'name')
local state = f[1]
if not state then return false end
if FINAL[state] then return state end
if state == 'PENDING' or state == 'RETRY' then
  redis.call('ZREM', P .. 'delayed', id)
  redis.call('HSET', rk, 'state', 'REVOKED', 'reason', reason, 'done', NOW, 'upd', NOW)
  redis.call('HDEL', rk, 'body')
  redis.call('PEXPIRE', rk, ttl)
  publish(id, 'REVOKED')
  settle(id, 'REVOKED', f[2], f[3])
  note('task-revoked', id, f[4], reason)
  count(f[4], 'revoked')
  flush('')
  return 'REVOKED'
end
redis.call('HSET', rk, 'revoked', reason)
return state
