/**
 * Every process start joins a group under a new consumer name (its owner id),
 * so without pruning a group collects one dead consumer per restart and
 * `XINFO CONSUMERS` becomes unreadable. The partition owner removes consumers
 * of its partition that have nothing pending and have been idle a long time.
 */
import type { RedisClient } from '@petcover/service-kit';

/**
 * KEYS[1]  partition stream key
 * ARGV[1]  group
 * ARGV[2]  the caller's consumer name (never removed)
 * ARGV[3]  minimum idle time in ms
 * Result   number of consumers removed.
 * Atomic, so a consumer cannot receive entries between the check that it has
 * none pending and its removal (which would drop them from the pending list).
 */
const PRUNE_SCRIPT = `
local removed = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
  if fields['name'] ~= ARGV[2] and tonumber(fields['pending']) == 0 and tonumber(fields['idle']) >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed = removed + 1
  end
end
return removed
`;

/** Removes idle consumers with nothing pending from `group` on `key`; returns how many. */
export async function pruneIdleConsumers(redis: RedisClient, key: string, group: string, self: string, minIdleMs: number): Promise<number> {
  return Number(await redis.eval(PRUNE_SCRIPT, 1, key, group, self, String(minIdleMs)));
}
