--[[
stamp-fence.lua — records a publisher's fencing token on one partition stream,
run for every partition of a stream when its lease is acquired, so a zombie
owner is refused even on partitions the new owner has not written yet.

KEYS:
  KEYS[1] meta hash {<stream key>}:meta
ARGV:
  ARGV[1] fencing token (decimal)
RESULT:
  {'OK', existed}       the token is now the stream's fence; existed = 1 when the
                        meta hash was there before (0: new stream, or Redis lost it)
  {'FENCED', current}   the stream already carries a newer token; nothing changed
]]
local fence = redis.call('HGET', KEYS[1], 'fence')
if fence and tonumber(fence) > tonumber(ARGV[1]) then
  return {'FENCED', fence}
end
redis.call('HSET', KEYS[1], 'fence', ARGV[1])
if fence then
  return {'OK', 1}
end
return {'OK', 0}
