-- fail_links.lua: a task of a chain failed (or was revoked), so the links after it will never
-- be sent. Record its final state under their ids too, so waiting on the chain's result raises
-- the error instead of hanging, as in Celery. Ids that already have a record are left alone,
-- except a placeholder (placeholders.lua), which takes the state (and stays one, so the task
-- is never sent after all).
-- KEYS[1]: the record of the first id (t:<id>); the others share its prefix (and slot).
-- ARGV: prefix, result_ttl_ms, state, result (json), traceback, then the ids.
-- Returns the number of records written.
local ttl, state, result, tb = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local written = 0
for i = 6, #ARGV do
  local id = ARGV[i]
  local rk = tkey(id)
  local cur = redis.call('HMGET', rk, 'state', 'ph', 'group', 'chain')
  if not cur[1] or cur[2] and cur[1] == 'PENDING' then
    redis.call('HSET', rk, 'state', state, 'rtype', 'json', 'result', result, 'tb', tb,
      'reason', 'an earlier task of its chain ended in ' .. state, 'done', NOW, 'upd', NOW)
    redis.call('PEXPIRE', rk, ttl)
    publish(id, state)
    settle(id, state, cur[3], cur[4])
    written = written + 1
  end
end
return written
