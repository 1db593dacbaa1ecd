--[[
stamp-fence.lua — records a publisher's fencing token and database identity on
one partition stream and reports the stream's last entry id. Run for every
partition of a stream when its lease is acquired and whenever the publisher
reconciles Redis with Postgres, so a zombie owner is refused even on
partitions the new owner has not written yet.

KEYS (same hash tag as the stream key, so one Redis Cluster slot):
  KEYS[1] meta hash   {<stream key>}:meta   fields `fence` = highest fencing token
                                            seen, `db` = identity of the database
                                            whose publisher wrote the stream last
  KEYS[2] stream key
ARGV:
  ARGV[1] fencing token (decimal)
  ARGV[2] database identity of the caller (see databaseIdentity in statements.ts)
RESULT:
  {'OK', existed, previous_db, last_id}
                        the token is now the stream's fence; existed = 1 when the
                        meta hash was there before (0: new stream, or Redis lost
                        it); previous_db = the other identity found when another
                        database wrote the stream last, '' otherwise; last_id =
                        the stream's last-generated-id ('0-0': no stream)
  {'FENCED', current}   the stream already carries a newer token from the same
                        database; nothing changed

Another database's tokens mean nothing here (they come from another lease
table), so on an identity change the caller's token is adopted even when lower
(a stale token from the old database, e.g. with a skewed clock, would otherwise
block the new one forever). Safe enough: fencing orders owners of ONE
database's lease; two live databases on one stream is the split-database
misconfiguration that `events status` diagnoses. A hash without `db` (written
before identities existed) is adopted.
]]
local fence = redis.call('HGET', KEYS[1], 'fence')
local db = redis.call('HGET', KEYS[1], 'db')
local previous_db = ''
if fence and db and db ~= ARGV[2] then
  previous_db = db
elseif fence and tonumber(fence) > tonumber(ARGV[1]) then
  return {'FENCED', fence}
end
local last = '0-0'
if redis.call('EXISTS', KEYS[2]) == 1 then
  -- Raises WRONGTYPE when something else owns the key: the caller isolates that stream.
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] break end
  end
end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'db', ARGV[2])
if fence then
  return {'OK', 1, previous_db, last}
end
return {'OK', 0, '', last}
