-- Removes shard ARGV[3] from the queue: the acked entry ARGV[2] and any
-- newer entry of the shard that a reclaim created.
local id, shard = ARGV[2], ARGV[3]
local mark = redis.call('HGET', shards, shard)
redis.call('XACK', jobs, group, id)
redis.call('XDEL', jobs, id)
if mark then
  redis.call('XACK', jobs, group, mark)
  redis.call('XDEL', jobs, mark)
  redis.call('HDEL', shards, shard)
end
redis.call('HDEL', errors, shard)
return 1
