-- Queues the jobs whose shard has no live entry. ARGV[2..]: pairs of
-- (shard id, job message). Returns how many were queued.
local queued = 0
for i = 2, #ARGV, 2 do
  local shard, message = ARGV[i], ARGV[i + 1]
  local mark = redis.call('HGET', shards, shard)
  if not mark or not entry_fields(mark) then
    local id = redis.call('XADD', jobs, '*', 'shard', shard, 'deliveries', 0, 'job', message)
    redis.call('HSET', shards, shard, id)
    queued = queued + 1
  end
end
return queued
