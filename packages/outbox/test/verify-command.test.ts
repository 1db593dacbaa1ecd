/** `events verify` through the events CLI: arguments, exit codes and output, against a real database. */
import { sql as drizzleSql } from 'drizzle-orm';
import { enqueue } from '../src';
import { createTestDatabase, testRedisUrl, uniqueGroupName, uniqueRedisPrefix, uniqueStreamName, type TestDatabase } from '../src/testing';
import { eventsCliEnv, runEventsCliCaptured } from './events-cli-runner';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(async () => testDb.drop());

const cli = (argv: string[], redisUrl = testRedisUrl()) => runEventsCliCaptured(['verify', ...argv], eventsCliEnv(testDb.url, uniqueRedisPrefix(), redisUrl));

describe('events verify', () => {
  test.each([
    [['--since'], "Option '--since <value>' argument missing"],
    [['--since', 'yesterday'], '--since must be an ISO-8601 time or a duration like 30m (got yesterday)'],
    [['--since', '1h', '--until', '2h'], '--until must be after --since'],
    [['--group', 'a b'], '--group must hold only letters, digits and _.- (got a b)'],
    [['--bogus'], "Unknown option '--bogus'"],
    [['--handles', 'ThingChanged'], '--handles must look like <group>=<EventType>[,<EventType>...] (got ThingChanged)'],
    [['--handles', 'g=Thing Changed'], '--handles must look like <group>=<EventType>[,<EventType>...] (got g=Thing Changed)'],
  ])('%j is refused with exit 2 and a precise message', async (argv, message) => {
    const result = await cli(argv);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
  });

  test('exit 0 when every event is handled, 1 once one goes missing; works without Redis', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName();
    const event = await testDb.db.transaction(async (tx) => {
      const e = await enqueue(tx, { stream, type: 'ThingChanged', partitionKey: 'k', payload: {} });
      await tx.execute(drizzleSql`INSERT INTO events.processed_event (group_name, event_id) VALUES (${group}, ${e.eventId})`);
      return e;
    });
    const ok = await cli(['--group', group, '--since', '10m']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^verify: OK/);

    await testDb.sql`DELETE FROM events.processed_event WHERE event_id = ${event.eventId}`;
    // The group still leaves a trace (its lease), so it is still expected to handle the event.
    await testDb.sql`
      INSERT INTO events.stream_lease (stream_name, role, owner_id, lease_until, fencing_token)
      VALUES (${stream}, ${`consumer:${group}`}, 'host:1:abc', now(), 1)`;
    const failed = await cli(['--group', group, '--json'], 'redis://127.0.0.1:1/0');
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('Redis unreachable');
    expect(JSON.parse(failed.stdout)).toMatchObject({ ok: false, missing: 1 });
  });

  test('--handles says which types a group handles: the others are skipped', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName();
    await testDb.db.transaction(async (tx) => {
      const handled = await enqueue(tx, { stream, type: 'ThingChanged', partitionKey: 'k', payload: {} });
      await enqueue(tx, { stream, type: 'ThingAudited', partitionKey: 'k', payload: {} });
      await tx.execute(drizzleSql`INSERT INTO events.processed_event (group_name, event_id) VALUES (${group}, ${handled.eventId})`);
    });
    const told = await cli(['--group', group, '--since', '10m', '--handles', `${group}=ThingChanged`, '--json']);
    expect(told.code).toBe(0);
    expect(JSON.parse(told.stdout)).toMatchObject({ ok: true, skipped: 1, missing: 0 });
    const both = await cli(['--group', group, '--since', '10m', '--handles', `${group}=ThingChanged`, '--handles', `${group}=ThingAudited`]);
    expect(both.code).toBe(1);
    expect(both.stdout).toContain('missing 1');
  });
});
