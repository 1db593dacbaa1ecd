/**
 * `events status` on parked keys whose retry is overdue (`parked_key_overdue`):
 * a retrying key due long ago means nobody retries its partition, and the
 * problem says who holds the partition's lease. States are built for real in
 * Postgres (parked_key / parked_event rows, leases, nodes) and read through
 * collectEventsStatus and the CLI.
 */
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '@petcover/service-kit';
import {
  acquireLease,
  collectEventsStatus,
  formatEventsStatus,
  InvalidDiagnosisThresholdsError,
  listParkedKeys,
  partitionStreamName,
  resolveDiagnosisThresholds,
  type EventsStatus,
} from '../src';
import { createTestDatabase, createTestRedis, registerTestNode, uniqueGroupName, uniqueRedisPrefix, uniqueStreamName, type TestDatabase } from '../src/testing';
import { eventsCliEnv, runEventsCliCaptured } from './events-cli-runner';

let testDb: TestDatabase;
let redis: RedisClient;
// Nothing is written to Redis here; the prefix keeps status from reading other files' streams.
const keyPrefix = uniqueRedisPrefix();

beforeAll(async () => {
  testDb = await createTestDatabase();
  redis = createTestRedis();
});
afterAll(async () => {
  redis.disconnect();
  await testDb.drop();
});

/**
 * Parks `key` of `group` on `partition` with `events` events behind it (its
 * head included), next attempt `dueInSeconds` from now on the database clock
 * (negative: overdue), or halted.
 */
async function parkKey(group: string, partition: string, key: string, options: { attempts: number; dueInSeconds: number; events: number; halted?: boolean }) {
  await testDb.sql`
    INSERT INTO events.parked_key (group_name, stream_name, partition_key, attempts, next_attempt_at, halted_at, last_error, first_failed_at, parked_at)
    VALUES (${group}, ${partition}, ${key}, ${options.attempts}, now() + make_interval(secs => ${options.dueInSeconds}),
            ${options.halted ? testDb.sql`now()` : null}, 'payment provider down', now() - interval '10 minutes', now() - interval '10 minutes')`;
  for (let i = 0; i < options.events; i++) {
    await testDb.sql`
      INSERT INTO events.parked_event (group_name, stream_name, partition_key, redis_entry_id, event_id, event_type, outbox_id, payload, headers, event_created_at)
      VALUES (${group}, ${partition}, ${key}, ${`${1_700_000_000_000 + i}-0`}, ${randomUUID()}, 'PaymentCaptured', ${String(i + 1)}, '{}', '{}', ${new Date().toISOString()})`;
  }
}

async function status(stream: string, thresholds?: Parameters<typeof collectEventsStatus>[0]['thresholds']): Promise<EventsStatus> {
  return collectEventsStatus({ sql: testDb.sql, redis, keyPrefix, stream, thresholds });
}

const cli = (argv: string[]) => runEventsCliCaptured(argv, eventsCliEnv(testDb.url, keyPrefix));

describe('events status: parked keys whose retry is overdue', () => {
  test('a key due 130 s ago on a partition held by a dead owner → parked_key_overdue naming key, attempts, overdue, events waiting and the dead holder; exit 1', async () => {
    const stream = uniqueStreamName('payments');
    const partition = partitionStreamName(stream, 2, 4);
    const group = uniqueGroupName('chaos');
    await parkKey(group, partition, 'payments-12', { attempts: 4, dueInSeconds: -130, events: 3 });
    await parkKey(group, partition, 'payments-11', { attempts: 2, dueInSeconds: -95, events: 2 });
    // A key of the same partition not due yet: counted, not named.
    await parkKey(group, partition, 'payments-3', { attempts: 1, dueInSeconds: 20, events: 1 });
    // The owner registered, then stopped heartbeating (its TTL is an hour): dead.
    await registerTestNode(testDb.sql, 'consumer-host:7:dead01', `consumer:${group}`);
    await testDb.sql`UPDATE events.relay_node SET heartbeat_at = now() - interval '2 hours' WHERE owner_id = 'consumer-host:7:dead01'`;
    await acquireLease(testDb.sql, { streamName: partition, role: `consumer:${group}`, ownerId: 'consumer-host:7:dead01', ttlMs: 600_000 });

    const report = await status(stream);
    expect(report.healthy).toBe(false);
    const overdue = report.problems.filter((p) => p.kind === 'parked_key_overdue');
    expect(overdue).toEqual([expect.objectContaining({ stream, group, partition })]);
    const { message, fix } = overdue[0]!;
    expect(message).toMatch(/payments-12 \(due 13\d(\.\d)?s ago, 4 failed attempt\(s\), 3 event\(s\) waiting\), payments-11 \(due 9\d(\.\d)?s ago, 2 failed attempt\(s\), 2 event\(s\) waiting\)/);
    expect(message).not.toContain('payments-3 (');
    expect(message).toContain('3 key(s) parked there (0 halted), 6 event(s) waiting in all');
    expect(message).toContain("the partition's lease is held by consumer-host:7:dead01, whose node is dead");
    expect(fix).toContain(`events lease release --stream ${partition} --role consumer:${group}`);
    // The dead owner is its own problem too, with its own fix.
    expect(report.problems.map((p) => p.kind)).toContain('lease_owner_dead');
    expect(report.streams[0]!.parking).toEqual([
      { group, partition, keys: 3, halted: 0, parkedEvents: 6, mostOverdueSeconds: expect.any(Number) },
    ]);
    expect(report.streams[0]!.parking[0]!.mostOverdueSeconds).toBeGreaterThanOrEqual(130);

    const text = await cli(['status', '--stream', stream]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('[parked_key_overdue] parked keys of group');
    expect(text.stdout).toMatch(/parked key payments-12 in group \S+ \(\S+\): retrying, next attempt \S+ \(due 13\d(\.\d)?s ago\), 4 failed attempt/);
    expect(text.stdout).toMatch(/parked keys 3 \(0 halted, 6 events\), most overdue 13\d/);
    const json = await cli(['status', '--stream', stream, '--json']);
    expect(JSON.parse(json.stdout).problems).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'parked_key_overdue', partition })]));
  });

  test('keys due in the future or due just now are not overdue: no problem, HEALTHY, the next retry shown', async () => {
    const stream = uniqueStreamName('payments');
    const group = uniqueGroupName('chaos');
    await parkKey(group, stream, 'later', { attempts: 1, dueInSeconds: 30, events: 2 });
    await parkKey(group, stream, 'just-due', { attempts: 3, dueInSeconds: -5, events: 1 });
    await registerTestNode(testDb.sql, 'consumer-host:8:alive1', `consumer:${group}`);
    await acquireLease(testDb.sql, { streamName: stream, role: `consumer:${group}`, ownerId: 'consumer-host:8:alive1', ttlMs: 60_000 });

    const report = await status(stream);
    expect(report.problems).toEqual([]);
    expect(report.healthy).toBe(true);
    // Most overdue first: the key due 5 s ago, though parked at the same time as the other.
    expect(report.streams[0]!.parkedKeys.map((k) => [k.key, k.overdueSeconds === null ? null : k.overdueSeconds >= 5])).toEqual([
      ['just-due', true],
      ['later', null],
    ]);
    expect(formatEventsStatus(report)).toContain('HEALTHY');
    // A lower threshold makes the key due 5 s ago overdue.
    expect((await status(stream, { parkedKeyOverdueSeconds: 2 })).problems).toEqual([
      expect.objectContaining({ kind: 'parked_key_overdue', message: expect.stringContaining('just-due (due ') }),
    ]);
    expect((await cli(['status', '--stream', stream, '--parked-overdue-after', '2'])).code).toBe(1);
    expect((await cli(['status', '--stream', stream])).code).toBe(0);
  });

  test('a halted key is still halted_keys, never overdue, however old its next attempt', async () => {
    const stream = uniqueStreamName('payments');
    const group = uniqueGroupName('chaos');
    await parkKey(group, stream, 'owner-a', { attempts: 10, dueInSeconds: -3600, events: 4, halted: true });
    const report = await status(stream);
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'halted_keys', group, partition: stream, message: expect.stringContaining('key owner-a halted in group') }),
    ]);
    expect(report.streams[0]!.parking).toEqual([{ group, partition: stream, keys: 1, halted: 1, parkedEvents: 4, mostOverdueSeconds: null }]);
    expect(report.streams[0]!.parkedKeys[0]!.overdueSeconds).toBeNull();
  });

  test('who holds the lease decides the fix: nobody → start a consumer; a live, renewing owner → read its logs and restart it', async () => {
    const stream = uniqueStreamName('payments');
    const group = uniqueGroupName('chaos');
    await parkKey(group, stream, 'nobody-retries', { attempts: 2, dueInSeconds: -300, events: 1 });
    const unleased = (await status(stream)).problems.find((p) => p.kind === 'parked_key_overdue')!;
    expect(unleased.message).toContain(`no consumer of group ${group} holds the partition's lease`);
    expect(unleased.fix).toContain(`start events-consumer with CONSUMER_GROUP=${group}`);
    expect(unleased.fix).toContain(`events key discard --group ${group} --stream ${stream} --key <key>`);

    await registerTestNode(testDb.sql, 'consumer-host:9:alive2', `consumer:${group}`);
    await acquireLease(testDb.sql, { streamName: stream, role: `consumer:${group}`, ownerId: 'consumer-host:9:alive2', ttlMs: 60_000 });
    const report = await status(stream);
    // The live lease is no problem of its own: only the overdue key is.
    expect(report.problems).toEqual([
      expect.objectContaining({
        kind: 'parked_key_overdue',
        message: expect.stringContaining("the partition's lease is held by consumer-host:9:alive2, which is alive and renews it, yet does not retry them"),
        fix: expect.stringContaining('read the logs of consumer consumer-host:9:alive2'),
      }),
    ]);
    expect(report.problems[0]!.fix).toContain('events key release does not help');
  });

  test('listing: retrying keys come most overdue first, so the status limit never hides an overdue key behind waiting ones', async () => {
    const stream = uniqueStreamName('payments');
    const group = uniqueGroupName('chaos');
    // Parked in this order (parked_at ties are broken by key), due in the reverse one.
    await parkKey(group, stream, 'a-waiting', { attempts: 1, dueInSeconds: 60, events: 1 });
    await parkKey(group, stream, 'b-overdue', { attempts: 1, dueInSeconds: -200, events: 1 });
    await parkKey(group, stream, 'c-halted', { attempts: 5, dueInSeconds: 0, events: 1, halted: true });
    expect((await listParkedKeys(testDb.sql, { group })).map((k) => k.key)).toEqual(['c-halted', 'b-overdue', 'a-waiting']);
    expect((await listParkedKeys(testDb.sql, { group, limit: 2 })).map((k) => k.key)).toEqual(['c-halted', 'b-overdue']);
  });
});

describe('diagnosis thresholds', () => {
  test('defaults, overrides, and a typed error naming a bad one (NaN, negative, not a number, unknown)', async () => {
    expect(resolveDiagnosisThresholds()).toMatchObject({ parkedKeyOverdueSeconds: 60 });
    expect(resolveDiagnosisThresholds({ parkedKeyOverdueSeconds: 0, abandonedAfterSeconds: undefined })).toMatchObject({ parkedKeyOverdueSeconds: 0, abandonedAfterSeconds: 300 });
    for (const [thresholds, text] of [
      [{ parkedKeyOverdueSeconds: Number.NaN }, 'parkedKeyOverdueSeconds: must be a finite number of seconds, 0 or more (got NaN)'],
      [{ parkedKeyOverdueSeconds: -1 }, 'got -1'],
      [{ stuckAfterSeconds: '15' }, 'got "15"'],
      [{ parkedOverdue: 60 }, 'unknown threshold'],
    ] as const) {
      expect(() => resolveDiagnosisThresholds(thresholds as never)).toThrow(InvalidDiagnosisThresholdsError);
      expect(() => resolveDiagnosisThresholds(thresholds as never)).toThrow(text);
    }
    // collectEventsStatus refuses before any query.
    await expect(status(uniqueStreamName(), { parkedKeyOverdueSeconds: -5 })).rejects.toMatchObject({ name: 'InvalidDiagnosisThresholdsError', threshold: 'parkedKeyOverdueSeconds' });
    expect(await cli(['status', '--parked-overdue-after', '1m'])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--parked-overdue-after must be a whole number of seconds (got 1m)'),
    });
  });
});
