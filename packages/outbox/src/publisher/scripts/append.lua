--[[
append.lua — fenced append of one batch to ONE partition stream, compare-and-set
on the stream's last entry id.

KEYS (both share the hash tag of the stream key, so one Redis Cluster slot):
  KEYS[1] stream key                       e.g. stream:contracting:contract_changes
  KEYS[2] meta hash   {<stream key>}:meta   fields `fence` = highest fencing token seen,
                                           `db` = identity of the database written from
ARGV:
  ARGV[1] fencing token of the caller's publisher lease (decimal)
  ARGV[2] database identity of the caller (see databaseIdentity in statements.ts)
  ARGV[3] the stream's last entry id as the caller knows it ('0-0': no stream yet)
  ARGV[4..] entries, 7 values each, in ENTRY_FIELDS order:
          outbox_id, event_id, type, partition_key, payload, headers, created_at
RESULT:
  {'OK', previous_db, id1, id2, ...}
                        every entry appended, in order, with the ids Redis gave them;
                        previous_db = the other database identity found in `db`
                        (its fence was replaced), '' otherwise
  {'FENCED', current}   the stream carries a newer fencing token; nothing written
  {'NOMETA', 0}         the meta hash is gone (flush, restart without persistence):
                        the caller re-checks its lease and stamps it again; nothing written
  {'MOVED', last_id}    the stream's last entry id is not ARGV[3]: Redis is behind
                        (older snapshot, failover, flush, stream deleted) or ahead
                        (a crash between append and mark) of what Postgres recorded.
                        The caller reconciles first; nothing written

Why the compare-and-set replaces a dedupe record: the caller's last entry id
comes from Postgres (recorded with the rows it marked published) plus its own
appends since, so an equal last id proves Redis holds exactly what the caller
believes; nothing it appends can be a second copy, and nothing older can be
missing. `last-generated-id` survives trimming and XDEL, so neither looks like
a loss.

Another database identity in `db` (a re-created database, or a second one on
the same stream): the caller's token and identity are adopted even when the
token is lower, as in stamp-fence.lua (which explains why).
]]
local fence = redis.call('HGET', KEYS[2], 'fence')
if not fence then
  return {'NOMETA', 0}
end
local db = redis.call('HGET', KEYS[2], 'db')
local previous_db = ''
local token = tonumber(ARGV[1])
if db and db ~= ARGV[2] then
  previous_db = db
  redis.call('HSET', KEYS[2], 'fence', ARGV[1], 'db', ARGV[2])
else
  if token < tonumber(fence) then
    return {'FENCED', fence}
  end
  if token > tonumber(fence) or not db then
    redis.call('HSET', KEYS[2], 'fence', ARGV[1], 'db', ARGV[2])
  end
end

local last = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- Raises WRONGTYPE when something else owns the key: the caller isolates that stream.
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] break end
  end
end
if last ~= ARGV[3] then
  return {'MOVED', last}
end

local result = {'OK', previous_db}
for i = 4, #ARGV, 7 do
  result[#result + 1] = redis.call('XADD', KEYS[1], '*',
    'outbox_id', ARGV[i],
    'event_id', ARGV[i + 1],
    'type', ARGV[i + 2],
    'partition_key', ARGV[i + 3],
    'payload', ARGV[i + 4],
    'headers', ARGV[i + 5],
    'created_at', ARGV[i + 6])
end
return result
