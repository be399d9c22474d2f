-- write.lua: apply a batch of worker writes (see apply_writes in lib.lua) without claiming.
-- KEYS[1]: the worker's active hash (w:<worker>:active).
-- ARGV: prefix, worker, result_ttl_ms, dead_ttl_ms, then the write batch. Returns stale count.
local stale = apply_writes(ARGV[2], 5, tonumber(ARGV[3]), tonumber(ARGV[4]))
flush(ARGV[2])
return stale
