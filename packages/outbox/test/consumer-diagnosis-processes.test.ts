/**
 * Issue 14 item 7 and the consumer side of `events status`, with the built
 * events-publisher and events-consumer as real processes:
 * - a partition stuck on an entry whose dead letter Postgres refuses even in
 *   minimal form → partition_stuck naming entry, group and cause; the fix
 *   (Postgres accepts it again) lets the partition flow and clears it;
 * - a partition key of the wrong type → consumer_partition_fault; deleting
 *   the key lets the group be created and clears it;
 * - a one-off consumer group, stopped → group_abandoned (told apart from a
 *   live one), listed by `events group list`, removed by `events group delete`;
 * - lease rows edited by hand into impossible states → lease_impossible, and
 *   the processes log it once with that meaning (never "postgres
 *   unreachable"); `events lease release` heals it.
 *
 * Needs the apps built (turbo.json makes this package's test task depend on
 * their build). Waits bound a hang, not the machine's speed.
 */
import path from 'node:path';
import type { RedisClient } from '@petcover/service-kit';
import { enqueueMany, type EventsStatus, type StatusProblem } from '../src';
import { partitionStreamName, redisStreamKey } from '../src/streams';
import {
  createTestDatabase,
  createTestRedis,
  freePort,
  killSpawnedApps,
  spawnBuiltApp,
  testRedisUrl,
  uniqueGroupName,
  uniqueRedisPrefix,
  uniqueStreamName,
  waitFor,
  type BuiltAppProcess,
  type TestDatabase,
} from '../src/testing';
import { eventsCliEnv, runEventsCliCaptured } from './events-cli-runner';

const CONSUMER_MODULE = path.join(__dirname, 'fixtures', 'runbook-consumer-module.ts');
/** Bounds a hang; a loaded machine (load average 10+) needs seconds for what takes milliseconds idle. */
const DEADLINE_MS = 90_000;

jest.setTimeout(4 * DEADLINE_MS);

let testDb: TestDatabase;
let redis: RedisClient;
const keyPrefix = uniqueRedisPrefix();

beforeAll(async () => {
  testDb = await createTestDatabase();
  redis = createTestRedis();
});
afterEach(() => killSpawnedApps());
afterAll(async () => {
  const keys = await redis.keys(`${keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await testDb.drop();
});

async function spawnApp(app: 'publisher' | 'consumer', args: string[], extraEnv: Record<string, string> = {}): Promise<BuiltAppProcess> {
  return spawnBuiltApp(app, args, {
    DATABASE_URL: testDb.url,
    REDIS_URL: testRedisUrl(),
    REDIS_KEY_PREFIX: keyPrefix,
    HEALTH_PORT: String(await freePort()),
    ...extraEnv,
  });
}

const spawnPublisher = () => spawnApp('publisher', ['--poll-interval', '0.2', '--lease-ttl', '3']);
const spawnConsumer = (stream: string, group: string, env: Record<string, string> = {}) =>
  spawnApp('consumer', ['--group', group, '--module', CONSUMER_MODULE, '--lease-ttl', '3'], { FIXTURE_STREAM: stream, ...env });

const cli = (argv: string[]) => runEventsCliCaptured(argv, eventsCliEnv(testDb.url, keyPrefix));

async function status(stream: string, extra: string[] = []): Promise<EventsStatus> {
  return JSON.parse((await cli(['status', '--stream', stream, '--json', ...extra])).stdout) as EventsStatus;
}

/** Waits until `events status` of `stream` reports a problem of `kind`, and returns it. */
async function problemOf(stream: string, kind: StatusProblem['kind'], description: string, extra: string[] = []): Promise<StatusProblem> {
  return waitFor(async () => (await status(stream, extra)).problems.find((p) => p.kind === kind), { timeoutMs: DEADLINE_MS, intervalMs: 200, description });
}

async function enqueue(stream: string, payloads: Array<Record<string, unknown>>): Promise<string[]> {
  return testDb.db.transaction(async (tx) => {
    const events = await enqueueMany(
      tx,
      payloads.map((payload) => ({ stream, type: 'RunbookTested', partitionKey: 'one-key', payload })),
    );
    return events.map((e) => e.eventId);
  });
}

async function processed(group: string, eventIds: string[]): Promise<number> {
  const [row] = await testDb.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM events.processed_event WHERE group_name = ${group} AND event_id::text IN ${testDb.sql(eventIds)}`;
  return row!.n;
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

describe('consumer-side events status with real processes', () => {
  test('dead letter refused even in minimal form → partition_stuck (entry, group, cause, fix); once Postgres accepts it the partition flows', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName();
    // Postgres refuses every dead letter of this group: the situation an operator meets with a full disk or a broken grant.
    await testDb.sql.unsafe(`
      CREATE OR REPLACE FUNCTION refuse_dead_letters() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.group_name = '${group}' THEN RAISE EXCEPTION 'dead letters refused by the test trigger'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_dead_letters BEFORE INSERT ON events.dead_letter FOR EACH ROW EXECUTE FUNCTION refuse_dead_letters();`);
    const publisher = await spawnPublisher();
    const consumer = await spawnConsumer(stream, group);
    try {
      // {ok: false} fails the handler's schema: dead-lettered at once, if Postgres lets it.
      const [poison, behind] = [await enqueue(stream, [{ ok: false }]), await enqueue(stream, [{ ok: true }])];
      const stuck = await problemOf(stream, 'partition_stuck', `partition_stuck reported\n${consumer.output()}`);
      const [entry] = (await redis.xrange(redisStreamKey(stream, keyPrefix), '-', '+', 'COUNT', 1)) as [string, string[]][];
      expect(stuck).toMatchObject({
        group,
        partition: stream,
        message: expect.stringContaining(`entry ${entry![0]}`),
        fix: expect.stringContaining(`XACK ${redisStreamKey(stream, keyPrefix)} ${group} ${entry![0]}`),
      });
      expect(stuck.message).toContain('dead letters refused by the test trigger');
      // The event behind it waits: order per partition is kept.
      expect(await processed(group, behind!)).toBe(0);

      // The fix: Postgres accepts dead letters again. The consumer retries by itself.
      await testDb.sql.unsafe('DROP TRIGGER refuse_dead_letters ON events.dead_letter');
      await waitFor(async () => (await processed(group, [...poison!, ...behind!])) === 2, { timeoutMs: DEADLINE_MS, description: `both events settled\n${consumer.output()}` });
      const [letter] = await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.dead_letter WHERE group_name = ${group}`;
      expect(letter!.n).toBe(1);
      await waitFor(async () => !(await status(stream)).problems.some((p) => p.kind === 'partition_stuck'), { timeoutMs: DEADLINE_MS, description: 'stuck record cleared' });
      expect(count(consumer.output(), 'partition stuck: even a minimal dead letter was refused')).toBe(1);
    } finally {
      await consumer.stop();
      await publisher.stop();
    }
  });

  test('a partition key of the wrong type → consumer_partition_fault with the fix; deleting the key lets the group in', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName();
    const badPartition = partitionStreamName(stream, 1, 2);
    const badKey = redisStreamKey(badPartition, keyPrefix);
    await redis.set(badKey, 'something else wrote here');
    const consumer = await spawnConsumer(stream, group, { STREAM_PARTITIONS: `${stream}=2` });
    try {
      const fault = await problemOf(stream, 'consumer_partition_fault', `consumer_partition_fault reported\n${consumer.output()}`);
      expect(fault).toMatchObject({ group, partition: badPartition, message: expect.stringContaining('WRONGTYPE'), fix: expect.stringContaining(`Redis key ${badKey} is not a stream`) });

      await redis.del(badKey);
      await waitFor(async () => !(await status(stream)).problems.some((p) => p.kind === 'consumer_partition_fault'), {
        timeoutMs: DEADLINE_MS,
        description: `fault cleared once the group is created\n${consumer.output()}`,
      });
      expect(((await redis.xinfo('GROUPS', badKey)) as unknown[][]).map((g) => String(g[1]))).toEqual([group]);
    } finally {
      await consumer.stop();
    }
  });

  test('a one-off group, stopped → group_abandoned, not while it runs; group list shows it; group delete refuses while live, then removes it', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName();
    const publisher = await spawnPublisher();
    const consumer = await spawnConsumer(stream, group);
    try {
      const ids = await enqueue(stream, [{ ok: true }, { ok: true }]);
      await waitFor(async () => (await processed(group, ids)) === 2, { timeoutMs: DEADLINE_MS, description: `handled\n${consumer.output()}` });
      const listed = JSON.parse((await cli(['group', 'list', '--json'])).stdout) as Array<{ group: string; liveConsumers: string[]; leases: unknown[] }>;
      expect(listed.find((g) => g.group === group)).toMatchObject({ liveConsumers: [expect.any(String)], leases: [expect.objectContaining({ live: true })] });
      // Live: neither abandoned (threshold 1 s) nor deletable without --force.
      expect((await status(stream, ['--abandoned-after', '1'])).problems.map((p) => p.kind)).not.toContain('group_abandoned');
      expect(await cli(['group', 'delete', '--group', group])).toMatchObject({ code: 1, stderr: expect.stringContaining('is in use') });

      expect(await consumer.stop()).toBe(0);
      await enqueue(stream, [{ ok: true }]);
      const abandoned = await problemOf(stream, 'group_abandoned', 'group_abandoned after the consumer stopped', ['--abandoned-after', '1']);
      expect(abandoned).toMatchObject({ group, fix: expect.stringContaining(`events group delete --group ${group}`) });

      expect(await cli(['group', 'delete', '--group', group])).toMatchObject({ code: 0, stdout: expect.stringContaining(`deleted group ${group}`) });
      const after = await status(stream, ['--abandoned-after', '1']);
      expect(after.streams[0]!.groups).toEqual([]);
      expect(after.healthy).toBe(true);
    } finally {
      await consumer.stop();
      await publisher.stop();
    }
  });

  test('lease rows edited into impossible states: lease_impossible, logged once by publisher and consumer with that meaning; lease release heals them', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName();
    const publisher = await spawnPublisher();
    const consumer = await spawnConsumer(stream, group);
    try {
      const first = await enqueue(stream, [{ ok: true }]);
      await waitFor(async () => (await processed(group, first)) === 1, { timeoutMs: DEADLINE_MS, description: `first event handled\n${consumer.output()}` });

      // The publisher's token at bigint max; the consumer's negative.
      await testDb.sql`UPDATE events.stream_lease SET fencing_token = 9223372036854775807 WHERE stream_name = ${stream} AND role = 'publisher'`;
      await testDb.sql`UPDATE events.stream_lease SET fencing_token = -7 WHERE stream_name = ${stream} AND role = ${`consumer:${group}`}`;
      const report = await waitFor(
        async () => {
          const r = await status(stream);
          return r.problems.filter((p) => p.kind === 'lease_impossible').length === 2 ? r : null;
        },
        { timeoutMs: DEADLINE_MS, description: 'both leases reported impossible' },
      );
      expect(report.problems.filter((p) => p.kind === 'lease_impossible').map((p) => p.fix)).toEqual([
        expect.stringContaining(`events lease release --stream ${stream} --role consumer:${group}`),
        expect.stringContaining(`events lease release --stream ${stream} --role publisher`),
      ]);
      await waitFor(() => publisher.output().includes('was edited into an impossible state') && consumer.output().includes('was edited into an impossible state'), {
        timeoutMs: DEADLINE_MS,
        description: `both processes log the impossible lease\n${publisher.output()}\n${consumer.output()}`,
      });
      // Rows queued meanwhile wait for the release (lease rounds go on meanwhile, without a second log line).
      const queued = await enqueue(stream, [{ ok: true }]);

      expect((await cli(['lease', 'release', '--stream', stream, '--role', 'publisher'])).code).toBe(0);
      expect((await cli(['lease', 'release', '--stream', stream, '--role', `consumer:${group}`])).code).toBe(0);
      await waitFor(async () => (await processed(group, queued)) === 1, { timeoutMs: DEADLINE_MS, description: `handled after the release\n${publisher.output()}\n${consumer.output()}` });
      await waitFor(async () => (await status(stream)).healthy, { timeoutMs: DEADLINE_MS, description: 'status healthy after the release' });

      for (const app of [publisher, consumer]) {
        expect(count(app.output(), 'was edited into an impossible state')).toBe(1);
        expect(app.output()).not.toMatch(/postgres unreachable/i);
        expect(app.output()).toContain('lease row is sane again');
      }
    } finally {
      await consumer.stop();
      await publisher.stop();
    }
  });
});
