--[[
trim.lua — trims one partition stream without ever removing an entry that a
consumer group has not acknowledged or not yet been delivered.

KEYS:
  KEYS[1] stream key
ARGV:
  ARGV[1] keep-acknowledged age in ms: acknowledged entries younger than this
          stay (for inspection and late groups); 0 trims them at once
  ARGV[2] max age in ms for a stream that has NO consumer group (nobody will
          ever acknowledge); 0 = never trim such a stream
RESULT:
  {removed, minid}   entries removed and the MINID used ('' when nothing was trimmed)

Runs as one script so a group cannot move (or appear) between reading the
groups and trimming.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, ''}
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

-- Smallest of two stream ids "ms-seq".
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
local floor = nil
if #groups == 0 then
  local max_age = tonumber(ARGV[2])
  if max_age <= 0 then
    return {0, ''}
  end
  floor = string.format('%d-0', now_ms - max_age)
else
  for _, group in ipairs(groups) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    local group_floor
    if tonumber(info['pending']) > 0 then
      -- The oldest entry delivered but not acknowledged stays.
      local first = redis.call('XPENDING', KEYS[1], info['name'], '-', '+', 1)
      group_floor = first[1][1]
    else
      -- Everything up to last-delivered-id is acknowledged; keep what follows.
      local ms, seq = parse(info['last-delivered-id'])
      group_floor = string.format('%d-%d', ms, seq + 1)
    end
    if floor == nil or less(group_floor, floor) then floor = group_floor end
  end
  local age_floor = string.format('%d-0', now_ms - tonumber(ARGV[1]))
  if less(age_floor, floor) then floor = age_floor end
end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', floor)
return {removed, floor}
