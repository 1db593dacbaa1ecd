/**
 * The real events-publisher process under kills, stops and races: two
 * replicas, SIGKILL of the owner, the exit-after-append fault hook, and a
 * zombie (SIGSTOP past its lease, then SIGCONT). Short TTLs keep it quick;
 * timing is never asserted as performance.
 */
import fs from 'node:fs';
import type { RedisClient } from '@petcover/service-kit';
import { createTestDatabase, createTestRedis, trackedRedisPrefixes, testRedisUrl, uniqueStreamName, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import { expectExactlyOnceInOrder, fillOutbox, metricsText, spawnPublisher, unpublishedCount, type PublisherProcess } from './spawn-publisher';

let db: TestDatabase;
let redis: RedisClient;
const processes: PublisherProcess[] = [];
const prefixes = trackedRedisPrefixes();
const uniqueRedisPrefix = prefixes.next;

beforeAll(async () => {
  db = await createTestDatabase();
  redis = createTestRedis();
});
afterEach(async () => {
  for (const p of processes.splice(0)) {
    p.child.kill('SIGCONT');
    p.child.kill('SIGKILL');
    await p.exited;
  }
});
afterAll(async () => {
  await prefixes.deleteAll(redis);
  await db.drop();
  redis.disconnect();
});

async function publisher(keyPrefix: string, args: string[], env?: Record<string, string>) {
  const p = await spawnPublisher({ databaseUrl: db.url, redisUrl: testRedisUrl(), keyPrefix, args, env });
  processes.push(p);
  return p;
}

/** True when the process is stopped (SIGSTOP): state `T` in /proc/<pid>/stat. */
function isStopped(pid: number): boolean {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
}

const acquired = (p: PublisherProcess) => p.lines.filter((l) => l.msg === 'publisher lease acquired; draining').map((l) => String(l.stream));

test('two publisher processes: each stream has one owner at a time and every event is relayed once, in order', async () => {
  const prefix = uniqueRedisPrefix();
  const streams = Array.from({ length: 4 }, (_, i) => uniqueStreamName(`two${i}`));
  const args = ['--poll-interval', '0.2', '--lease-ttl', '3', '--batch-size', '100'];
  const [a, b] = await Promise.all([publisher(prefix, args), publisher(prefix, args)]);
  for (const stream of streams) await fillOutbox(db, stream, 500);
  await waitFor(async () => (await unpublishedCount(db, streams)) === 0, { timeoutMs: 30_000, description: 'all rows published' });

  for (const stream of streams) await expectExactlyOnceInOrder(db, redis, stream, `${prefix}${stream}`);
  // No kill, no expiry: every stream was taken once, by one of the two, and nobody was fenced.
  const owners = [...acquired(a!), ...acquired(b!)].filter((s) => streams.includes(s));
  expect(owners.sort()).toEqual([...streams].sort());
  expect([...a!.lines, ...b!.lines].filter((l) => String(l.msg).startsWith('append refused'))).toHaveLength(0);
  expect(await Promise.all([a!.stop(), b!.stop()])).toEqual([0, 0]);
  expect(await db.sql`SELECT 1 FROM events.stream_lease WHERE stream_name = ANY(${`{${streams.join(',')}}`}::text[])`).toHaveLength(0);
});

test('SIGKILL of the owner mid-drain: another publisher takes over after the lease expires; nothing lost, nothing doubled', async () => {
  const prefix = uniqueRedisPrefix();
  const stream = uniqueStreamName('kill');
  await fillOutbox(db, stream, 3_000);
  const a = await publisher(prefix, ['--poll-interval', '0.2', '--lease-ttl', '1.5', '--batch-size', '20']);
  await waitFor(async () => (await unpublishedCount(db, [stream])) < 2_900, { description: 'owner published some rows' });
  a.child.kill('SIGKILL');
  await a.exited;
  const left = await unpublishedCount(db, [stream]);
  expect(left).toBeGreaterThan(0);

  const b = await publisher(prefix, ['--poll-interval', '0.2', '--lease-ttl', '1.5', '--batch-size', '200']);
  await waitFor(async () => (await unpublishedCount(db, [stream])) === 0, { timeoutMs: 20_000, description: 'the rest published by the second publisher' });
  expect(acquired(b)).toContain(stream);
  expect(await expectExactlyOnceInOrder(db, redis, stream, `${prefix}${stream}`)).toBe(3_000);
});

test('fault hook exit-after-append (crash between append and mark): the next owner marks the batch from its Redis entries, no duplicate, every row recorded with its entry id', async () => {
  const prefix = uniqueRedisPrefix();
  const stream = uniqueStreamName('fault');
  await fillOutbox(db, stream, 50);
  const a = await publisher(prefix, ['--poll-interval', '0.2', '--lease-ttl', '1', '--batch-size', '30'], { PETCOVER_FAULT: 'exit-after-append' });
  expect(await a.exited).toBe(86);
  // The batch reached Redis but was never marked published.
  expect(await redis.xlen(`${prefix}${stream}`)).toBe(30);
  expect(await unpublishedCount(db, [stream])).toBe(50);

  const b = await publisher(prefix, ['--poll-interval', '0.2', '--lease-ttl', '1', '--batch-size', '30']);
  await waitFor(async () => (await unpublishedCount(db, [stream])) === 0, { timeoutMs: 15_000, description: 'all published after restart' });
  expect(await expectExactlyOnceInOrder(db, redis, stream, `${prefix}${stream}`)).toBe(50);
  const entries = await redis.xrange(`${prefix}${stream}`, '-', '+');
  const recorded = await db.sql<{ id: string; redis_entry_id: string }[]>`
    SELECT id::text, redis_entry_id FROM events.outbox_event WHERE stream_name = ${stream} ORDER BY outbox_event.id`;
  expect(recorded.map((r) => [r.id, r.redis_entry_id])).toEqual(entries.map(([entryId, flat]) => [flat[flat.indexOf('outbox_id') + 1], entryId]));
  expect(b.lines.some((l) => l.stream === stream && l.marked === 30 && String(l.msg).startsWith('Redis held entries not yet marked published'))).toBe(true);
  expect(await b.stop()).toBe(0);
});

test('zombie: an owner stopped past its lease is refused on SIGCONT; the stream stays exactly-once and in order', async () => {
  const prefix = uniqueRedisPrefix();
  const stream = uniqueStreamName('zombie');
  await fillOutbox(db, stream, 40);
  // The hook SIGSTOPs the process with its first batch selected but not yet appended.
  const zombie = await publisher(prefix, ['--poll-interval', '0.2', '--lease-ttl', '1', '--batch-size', '25'], { PETCOVER_FAULT: 'stop-before-append' });
  // The process state in /proc turns to T (stopped): independent of whether its last log line was flushed.
  await waitFor(() => isStopped(zombie.child.pid!), {
    timeoutMs: 30_000,
    description: `zombie stopped itself (its log: ${JSON.stringify(zombie.lines.slice(-3).map((l) => l.msg))})`,
  });
  await waitFor(async () => (await db.sql`SELECT 1 FROM events.stream_lease WHERE stream_name = ${stream} AND lease_until < now()`).length === 1, {
    description: 'zombie lease expired',
  });

  const owner = await publisher(prefix, ['--poll-interval', '0.2', '--lease-ttl', '30', '--batch-size', '25']);
  await waitFor(async () => (await unpublishedCount(db, [stream])) === 0, { timeoutMs: 15_000, description: 'new owner published everything' });
  await fillOutbox(db, stream, 10);
  await waitFor(async () => (await unpublishedCount(db, [stream])) === 0, { description: 'new owner published more' });

  zombie.child.kill('SIGCONT');
  const refused = await zombie.waitForLog((l) => String(l.msg).startsWith('append refused'), 'zombie append refused');
  expect(refused.stream).toBe(stream);
  expect(await metricsText(zombie.healthPort)).toMatch(new RegExp(`petcover_publisher_fenced_refusals_total\\{stream="${stream}"\\} 1`));
  expect(await expectExactlyOnceInOrder(db, redis, stream, `${prefix}${stream}`)).toBe(50);
  expect(acquired(owner)).toContain(stream);
  expect(await zombie.stop()).toBe(0);
});

test('SIGTERM while the publisher is still registering (its health server already answers): a graceful stop, exit 0', async () => {
  // Registration is held up by a lock on events.relay_node (a slow or busy database at boot); seen in CI on a
  // Redis Cluster, where start takes longer: SIGTERM came before the handlers were installed and killed it.
  const locker = await db.sql.reserve();
  try {
    await locker`BEGIN`;
    await locker`LOCK TABLE events.relay_node IN ACCESS EXCLUSIVE MODE`;
    const p = await publisher(uniqueRedisPrefix(), []);
    await p.waitForLog((l) => l.msg === 'publisher starting', 'the publisher registering');
    p.child.kill('SIGTERM');
    await p.waitForLog((l) => l.signal === 'SIGTERM' && String(l.msg).startsWith('stopping'), 'the SIGTERM taken as a graceful stop');
    await locker`ROLLBACK`;
    expect(await p.exited).toBe(0);
  } finally {
    await locker`ROLLBACK`.catch(() => undefined);
    locker.release();
  }
});
