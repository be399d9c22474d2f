-- beat_lease.lua: take, renew or give up the lease of the beat leader (beat:leader), on this
-- server's clock, so a beat process's own clock never decides who may send.
-- KEYS[1]: beat:leader
-- ARGV: prefix, the beat's id, lease in ms (0: give the lease up if this beat holds it)
-- Returns {1 when this beat holds the lease now (else 0), the holder's id or ''}.
local key, me, ms = P .. 'beat:leader', ARGV[2], tonumber(ARGV[3])
local holder = redis.call('GET', key)
if ms == 0 then
  if holder == me then redis.call('DEL', key) end
  return {0, ''}
end
if holder == me then
  redis.call('PEXPIRE', key, ms)
  return {1, me}
end
if not holder then
  redis.call('SET', key, me, 'PX', ms)
  return {1, me}
end
return {0, holder}
