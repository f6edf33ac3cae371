-- Helpers shared by the queue scripts; each script is this file followed by
-- its own body. Every script takes the same keys, in this order:
local jobs, dead, shards, attempts, errors, workers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
-- and the consumer group as its first argument.
local group = ARGV[1]

-- Turns a flat [name, value, ...] reply into a table.
local function to_table(flat)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  return t
end

-- Returns the Redis clock in milliseconds. Using the server's clock keeps
-- idle times right when worker clocks disagree.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Records that `consumer` is alive. An empty XREADGROUP does not refresh a
-- consumer's idle time in Redis 7.0, so the queue keeps its own record.
local function seen(consumer)
  redis.call('HSET', workers, consumer, now_ms())
end

-- Returns the fields of stream entry `id`, or nil when it was deleted.
local function entry_fields(id)
  local range = redis.call('XRANGE', jobs, id, id)
  if #range == 0 then
    return nil
  end
  return to_table(range[1][2])
end

-- Returns the consumer that holds entry `id`, or nil when it is not pending.
local function holder(id)
  local pending = redis.call('XPENDING', jobs, group, id, id, 1)
  if #pending == 0 then
    return nil
  end
  return pending[1][2]
end

local function has_shard(fields)
  return fields.shard ~= nil and fields.shard ~= ''
end

-- Acks and deletes entry `id`, and drops the shard's dedupe mark if the
-- mark points to this entry.
local function remove_entry(id, fields)
  redis.call('XACK', jobs, group, id)
  redis.call('XDEL', jobs, id)
  if has_shard(fields) and redis.call('HGET', shards, fields.shard) == id then
    redis.call('HDEL', shards, fields.shard)
  end
end

-- Queues the job of entry `id` again as a new entry at the tail, which
-- changes its id so that the old lease can no longer act on it. Skips the
-- copy when another entry already holds the shard.
local function requeue(id, fields, deliveries)
  local mark = has_shard(fields) and redis.call('HGET', shards, fields.shard)
  remove_entry(id, fields)
  if mark and mark ~= id then
    return
  end
  local new_id = redis.call('XADD', jobs, '*',
    'shard', fields.shard or '', 'deliveries', deliveries, 'job', fields.job or '')
  if has_shard(fields) then
    redis.call('HSET', shards, fields.shard, new_id)
  end
end

-- Moves the job of entry `id` to the dead-letter stream with `reason`.
local function bury(id, fields, deliveries, reason, consumer)
  redis.call('XADD', dead, '*',
    'shard', fields.shard or '', 'job', fields.job or '', 'reason', reason,
    'consumer', consumer, 'deliveries', deliveries)
  remove_entry(id, fields)
  if has_shard(fields) then
    redis.call('HDEL', errors, fields.shard)
  end
end

-- The reason given when a job has been delivered max_deliveries times.
-- The in-process backend writes the same words.
local function exhausted_reason(deliveries, last_error)
  return 'delivered ' .. deliveries .. ' times without success (max_deliveries); last error: '
    .. (last_error or 'none recorded')
end
