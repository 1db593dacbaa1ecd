--[[
stamp-fence.lua — records a publisher's fencing token and database identity on
one partition stream, run for every partition of a stream when its lease is
acquired, so a zombie owner is refused even on partitions the new owner has
not written yet.

KEYS (same hash tag as the stream key, so one Redis Cluster slot):
  KEYS[1] meta hash   {<stream key>}:meta   fields `fence` = highest fencing token
                                            seen, `db` = identity of the database
                                            whose publisher wrote the stream last
  KEYS[2] dedupe zset {<stream key>}:dedupe outbox ids appended (see append.lua)
ARGV:
  ARGV[1] fencing token (decimal)
  ARGV[2] database identity of the caller (see databaseIdentity in statements.ts)
RESULT:
  {'OK', existed, previous_db}
                        the token is now the stream's fence; existed = 1 when the
                        meta hash was there before (0: new stream, or Redis lost
                        it: the caller recovers); previous_db = the other identity
                        found when another database wrote the stream last (its
                        dedupe set was dropped), '' otherwise
  {'FENCED', current}   the stream already carries a newer token from the same
                        database; nothing changed

Another database's outbox ids and tokens mean nothing here: ids restart at 1 in
a re-created database, so its dedupe set would swallow the new rows, and its
token comes from another lease table. So on an identity change the dedupe set
is dropped and the caller's token is adopted even when lower (a stale token
from the old database, e.g. with a skewed clock, would otherwise block the new
one forever). Safe enough: fencing orders owners of ONE database's lease; two
live databases on one stream is the split-database misconfiguration that
`events status` diagnoses, and at worst it re-sends entries (consumers dedupe by
event_id). A hash without `db` (written before identities existed) is adopted
without a reset.
]]
local fence = redis.call('HGET', KEYS[1], 'fence')
local db = redis.call('HGET', KEYS[1], 'db')
local previous_db = ''
if fence and db and db ~= ARGV[2] then
  previous_db = db
  redis.call('DEL', KEYS[2])
elseif fence and tonumber(fence) > tonumber(ARGV[1]) then
  return {'FENCED', fence}
end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'db', ARGV[2])
if fence then
  return {'OK', 1, previous_db}
end
return {'OK', 0, ''}
