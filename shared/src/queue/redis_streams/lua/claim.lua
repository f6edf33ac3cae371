-- Delivers the next queued job to consumer ARGV[2] and counts the attempt.
-- Returns nil when the queue is empty, else {entry id, shard, delivery,
-- attempt, job message}; shard and message are '' when missing, and the
-- attempt is 0 without a shard.
local consumer = ARGV[2]
seen(consumer)
local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', jobs, '>')
if not reply then
  return nil
end
local entry = reply[1][2][1]
local id, fields = entry[1], to_table(entry[2])
local delivery = (tonumber(fields.deliveries) or 0) + 1
local attempt = 0
if has_shard(fields) then
  attempt = redis.call('HINCRBY', attempts, fields.shard, 1)
end
return {id, fields.shard or '', delivery, attempt, fields.job or ''}
