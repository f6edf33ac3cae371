-- Moves entry ARGV[3] of consumer ARGV[2] to the dead-letter stream with
-- reason ARGV[4]. Returns 1, or 0 when the lease is lost.
local consumer, id, reason = ARGV[2], ARGV[3], ARGV[4]
if holder(id) ~= consumer then
  return 0
end
local fields = entry_fields(id) or {}
bury(id, fields, (tonumber(fields.deliveries) or 0) + 1, reason, consumer)
return 1
