-- beat_fire.lua: send one run of a periodic task and advance its next run, atomically.
-- KEYS[1]: beat:e:<name>
-- ARGV: prefix, mode, beat id, name, expected next (ms, as stored), new next (ms),
--   due (ms: the due time this run is for), then the task: id, queue, prio, name, ctype,
--   delay_ms (0 = now), expires_ms (0 = never), body, owner ('' = none)
-- mode 'tick': the leader sends a due run; 'skip': the leader moves past missed runs without
--   sending; 'run': send now (jobs.schedule.run_now), whoever asks, leaving the schedule alone.
-- Exactly once per due time, however many beats run: a tick or skip happens only while the
-- caller holds the lease (beat:leader, see beat_lease.lua) and only if the entry's next run is
-- still the one the caller read. A beat that lost the lease (stopped past it, say) and another
-- that sent the run already both find it moved on, so neither can send it a second time.
-- Returns {1, NOW} when done; {0, the stored next or ''} when the entry moved on (sent by
-- another beat, changed, paused or removed); {-1, the holder or ''} when the caller does not
-- hold the lease; {-2, next} when the run is not due yet by this server's clock.
local mode, me, name, expected = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ek = P .. 'beat:e:' .. name
if mode == 'run' then
  if redis.call('EXISTS', ek) == 0 then return {0, ''} end
else
  local holder = redis.call('GET', P .. 'beat:leader')
  if holder ~= me then return {-1, holder or ''} end
  local f = redis.call('HMGET', ek, 'next', 'paused')
  if f[1] ~= expected or f[2] == '1' then return {0, f[1] or ''} end
  if tonumber(expected) > NOW then return {-2, expected} end
end
if mode ~= 'skip' then
  local id, queue, prio, tname = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
  local ctype, delay, expires = ARGV[12], tonumber(ARGV[13]), tonumber(ARGV[14])
  local rk = tkey(id)
  redis.call('HSET', rk, 'state', 'PENDING', 'name', tname, 'queue', queue, 'prio', prio,
    'ctype', ctype, 'body', ARGV[15], 'upd', NOW)
  if expires > 0 then redis.call('HSET', rk, 'exp', NOW + expires) end
  if ARGV[16] and ARGV[16] ~= '' then redis.call('HSET', rk, 'owner', ARGV[16]) end
  if delay > 0 then
    redis.call('ZADD', P .. 'delayed', NOW + delay, id)
  else
    push_ready(id, queue, prio, false)
  end
  redis.call('HSET', ek, 'last', NOW, 'due', ARGV[7] ~= '' and ARGV[7] or NOW, 'last_id', id)
  redis.call('HINCRBY', ek, 'total', 1)
end
if mode ~= 'run' then
  redis.call('HSET', ek, 'next', ARGV[6])
  redis.call('ZADD', P .. 'beat:due', tonumber(ARGV[6]), name)
end
return {1, NOW}
