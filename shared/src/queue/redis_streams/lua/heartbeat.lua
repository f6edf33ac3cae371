-- Resets the idle time of entry ARGV[3] if consumer ARGV[2] still holds it.
-- Returns 1, or 0 when the lease is lost. XCLAIM with JUSTID leaves the
-- delivery count alone.
local consumer, id = ARGV[2], ARGV[3]
if holder(id) ~= consumer then
  return 0
end
redis.call('XCLAIM', jobs, group, consumer, 0, id, 'JUSTID')
seen(consumer)
return 1
