--[[
append.lua — idempotent, fenced append of one batch to ONE partition stream.

KEYS (all share the hash tag of the stream key, so one Redis Cluster slot):
  KEYS[1] stream key                       e.g. stream:contracting:contract_changes
  KEYS[2] meta hash   {<stream key>}:meta   field `fence` = highest fencing token seen
  KEYS[3] dedupe zset {<stream key>}:dedupe member = score = outbox id already appended
ARGV:
  ARGV[1] fencing token of the caller's publisher lease (decimal)
  ARGV[2] prune floor: every outbox id below it is already marked published in
          Postgres, so it can never be sent again and its dedupe record is dropped
  ARGV[3..] entries, 7 values each, in ENTRY_FIELDS order:
          outbox_id, event_id, type, partition_key, payload, headers, created_at
RESULT:
  {'OK', appended, skipped}  entries added / entries already present (a re-sent batch)
  {'FENCED', current}        the stream carries a newer fencing token; nothing written
  {'NOMETA', 0}              the meta hash is gone: Redis lost data this publisher
                             wrote (flush or restart without persistence); nothing written

Why a dedupe set and not "skip ids <= last appended": commit order is not id
order, so a row with a lower id can commit after a higher one was appended.
]]
local fence = redis.call('HGET', KEYS[2], 'fence')
if not fence then
  return {'NOMETA', 0}
end
local token = tonumber(ARGV[1])
if token < tonumber(fence) then
  return {'FENCED', fence}
end
if token > tonumber(fence) then
  redis.call('HSET', KEYS[2], 'fence', ARGV[1])
end

local floor = tonumber(ARGV[2])
if floor > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2])
end

local appended, skipped = 0, 0
for i = 3, #ARGV, 7 do
  local outbox_id = ARGV[i]
  -- ZADD NX answers 0 when the id is already recorded: one call instead of ZSCORE + ZADD.
  if redis.call('ZADD', KEYS[3], 'NX', outbox_id, outbox_id) == 0 then
    skipped = skipped + 1
  else
    redis.call('XADD', KEYS[1], '*',
      'outbox_id', outbox_id,
      'event_id', ARGV[i + 1],
      'type', ARGV[i + 2],
      'partition_key', ARGV[i + 3],
      'payload', ARGV[i + 4],
      'headers', ARGV[i + 5],
      'created_at', ARGV[i + 6])
    appended = appended + 1
  end
end
return {'OK', appended, skipped}
