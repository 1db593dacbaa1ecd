--[[
stream-head.lua — read-only: where one partition stream ends, for the check of
an idle stream (no append is coming that would notice a loss).

KEYS (same hash tag, one Redis Cluster slot):
  KEYS[1] meta hash   {<stream key>}:meta
  KEYS[2] stream key
RESULT:
  {has_meta, last_id}   has_meta = 1 while the meta hash exists; last_id = the
                        stream's last-generated-id ('0-0': no stream)
]]
local last = '0-0'
if redis.call('EXISTS', KEYS[2]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] break end
  end
end
return {redis.call('EXISTS', KEYS[1]), last}
