-- Handles every entry idle for at least ARGV[2] ms: requeues it, or buries
-- it once delivered ARGV[3] times. Then forgets workers that hold no entry
-- and have been idle for ARGV[4] ms. Returns {requeued, dead-lettered}.
local min_idle, max_deliveries, forget_after = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local requeued, buried = 0, 0
while true do
  -- Every entry listed leaves the pending list below, so each pass starts
  -- from the beginning.
  local expired = redis.call('XPENDING', jobs, group, 'IDLE', min_idle, '-', '+', 100)
  if #expired == 0 then
    break
  end
  for _, pending in ipairs(expired) do
    local id, consumer, idle = pending[1], pending[2], pending[3]
    local fields = entry_fields(id)
    if not fields then
      redis.call('XACK', jobs, group, id)
    else
      local deliveries = (tonumber(fields.deliveries) or 0) + 1
      local err = 'lease of worker ' .. consumer .. ' expired after ' .. idle .. ' ms without a heartbeat'
      if has_shard(fields) then
        redis.call('HSET', errors, fields.shard, err)
      end
      if deliveries >= max_deliveries then
        bury(id, fields, deliveries, exhausted_reason(deliveries, err), '')
        buried = buried + 1
      else
        requeue(id, fields, deliveries)
        requeued = requeued + 1
      end
    end
  end
end
-- A consumer without pending entries can go from the group at no cost: the
-- next delivery creates it again. The workers hash forgets it once idle.
local busy = {}
for _, flat in ipairs(redis.call('XINFO', 'CONSUMERS', jobs, group)) do
  local consumer = to_table(flat)
  if tonumber(consumer.pending) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', jobs, group, consumer.name)
  else
    busy[consumer.name] = true
  end
end
local now = now_ms()
local last_seen = to_table(redis.call('HGETALL', workers))
for consumer, at in pairs(last_seen) do
  if not busy[consumer] and now - tonumber(at) >= forget_after then
    redis.call('HDEL', workers, consumer)
  end
end
return {requeued, buried}
