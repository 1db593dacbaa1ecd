--[[
read-bounded.lua — XREADGROUP (never blocking) bounded in entries AND bytes,
so a partition of 250 KiB events does not bring 100 of them (25 MB) into
the consumer's heap at once.

KEYS:
  KEYS[1] partition stream key
ARGV:
  ARGV[1] group
  ARGV[2] consumer
  ARGV[3] from: '>' for new entries, or an id: this consumer's pending entries after it
  ARGV[4] max entries
  ARGV[5] max bytes (sum of field and value lengths); the first entry is always returned
  ARGV[6] entries read by the first XREADGROUP: the caller's guess of what fits
          (later chunks are sized from the average entry read so far)
RESULT:
  {entries, more}
    entries  as XREADGROUP returns them for one stream: {{id, {f, v, ...} | nil}, ...}
    more     1 when entries were delivered (now pending under the consumer) but
             not returned because the byte budget was reached: the caller reads
             its pending entries after the last returned id before reading '>' again.
]]
local group, consumer, from = ARGV[1], ARGV[2], ARGV[3]
local max_entries, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5])
local chunk = math.max(1, math.min(max_entries, tonumber(ARGV[6])))
local out, bytes, more = {}, 0, 0
while #out < max_entries do
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', chunk, 'STREAMS', KEYS[1], from)
  if not reply then break end
  local entries = reply[1][2]
  local n = #entries
  for i = 1, n do
    if #out > 0 and bytes >= max_bytes then
      more = 1
      break
    end
    local entry = entries[i]
    if entry[2] then
      for _, v in ipairs(entry[2]) do bytes = bytes + #v end
    end
    out[#out + 1] = entry
  end
  if more == 1 or n < chunk or bytes >= max_bytes then break end
  if from ~= '>' then from = entries[n][1] end
  local average = math.max(1, bytes / #out)
  chunk = math.max(1, math.min(max_entries - #out, math.floor((max_bytes - bytes) / average)))
end
return {out, more}
