-- chord.lua: a chord (or a group with chains or chords among its members) was sent. Before its
-- members go out, write the group's member list and counters (gc:<group>: total, done 0, and a
-- chord's body) and hold the body: its record is written with its message (state PENDING, field
-- hdr = the group) but not queued. settle() in
-- lib.lua queues it when the last header task reaches a final state, in the script that writes
-- that state: exactly once, with no polling task. A chord with an empty header is released at
-- once. The worker that runs the body reads the header's results (or fails with ChordError).
-- KEYS[1]: the header's counters (gc:<group>).
-- ARGV: prefix, result_ttl_ms, group, owner ('' none), member_of (the group the body counts in,
--   '' none), body id ('' for a group without a body: the fields up to expires_ms are then ''),
--   queue, prio, name, ctype, message, expires_ms (0 never), then the member ids, in order.
-- A body whose record is a placeholder (a chain's step) takes it over, keeping its chain and
-- group fields; one already final (revoked) stays so, and is never queued.
-- Returns the number of header members listed.
local ttl, group, owner, member_of = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local body, queue, prio, name = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local ctype, message, expires = ARGV[10], ARGV[11], tonumber(ARGV[12]) or 0
local members = {}
for i = 13, #ARGV do members[#members + 1] = ARGV[i] end
local gk, ck = P .. 'g:' .. group, KEYS[1]
for k = 1, #members, 1000 do  -- (in chunks: unpack has a limit)
  redis.call('RPUSH', gk, unpack(members, k, math.min(k + 999, #members)))
end
redis.call('HSET', ck, 'total', #members, 'done', 0, 'upd', NOW, 'at', NOW)
if owner ~= '' then redis.call('HSET', ck, 'owner', owner) end
if #members > 0 then redis.call('PEXPIRE', gk, ttl) end
redis.call('PEXPIRE', ck, ttl)
if body == '' then return #members end
redis.call('HSET', ck, 'body', body)
local rk = tkey(body)
local cur = redis.call('HGET', rk, 'state')
if cur and FINAL[cur] then
  redis.call('HDEL', ck, 'body')
  return #members
end
redis.call('HDEL', rk, 'ph')
redis.call('PERSIST', rk)
redis.call('HSET', rk, 'state', 'PENDING', 'name', name, 'queue', queue, 'prio', prio,
  'ctype', ctype, 'body', message, 'hdr', group, 'upd', NOW)
if expires > 0 then redis.call('HSET', rk, 'exp', NOW + expires) end
if owner ~= '' then redis.call('HSET', rk, 'owner', owner) end
if member_of ~= '' then redis.call('HSET', rk, 'group', member_of) end
if #members == 0 then
  redis.call('HDEL', ck, 'body')
  push_ready(body, queue, prio, false)
end
return #members
