-- Gives entry ARGV[3] of consumer ARGV[2] back. ARGV[4]: '1' if the delivery
-- counts (a failure), '0' if not (shutdown). ARGV[5]: max_deliveries.
-- ARGV[6]: the error, '' for none. Returns 1, or 0 when the lease is lost.
local consumer, id, counted = ARGV[2], ARGV[3], ARGV[4] == '1'
local max_deliveries, err = tonumber(ARGV[5]), ARGV[6]
if holder(id) ~= consumer then
  return 0
end
local fields = entry_fields(id)
if not fields then
  redis.call('XACK', jobs, group, id)
  return 1
end
local deliveries = (tonumber(fields.deliveries) or 0) + 1
if not counted then
  deliveries = deliveries - 1
end
if err ~= '' and has_shard(fields) then
  redis.call('HSET', errors, fields.shard, err)
end
if counted and deliveries >= max_deliveries then
  bury(id, fields, deliveries, exhausted_reason(deliveries, err), consumer)
else
  requeue(id, fields, deliveries)
end
return 1
