/** `events verify` argument parsing and exit codes, against a real database. */
import { sql as drizzleSql } from 'drizzle-orm';
import { parseVerifyArgs, runVerifyCommand, VERIFY_EXIT } from '../src/cli/verify-command';
import { enqueue } from '../src';
import { createTestDatabase, uniqueGroupName, uniqueStreamName, type TestDatabase } from '../src/testing';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(async () => testDb.drop());

function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = runVerifyCommand(argv, { env: { DATABASE_URL: testDb.url }, out: (l) => out.push(l), err: (l) => err.push(l) });
  return code.then((exitCode) => ({ exitCode, out: out.join('\n'), err: err.join('\n') }));
}

describe('events verify arguments', () => {
  const now = new Date('2026-11-22T12:00:00Z');
  test('--since takes an ISO time or a duration ago', () => {
    expect(parseVerifyArgs(['--since', '15m'], now).since).toEqual(new Date('2026-11-22T11:45:00Z'));
    expect(parseVerifyArgs(['--since', '2026-11-21T00:00:00Z', '--group', 'g'], now)).toEqual({
      since: new Date('2026-11-21T00:00:00Z'),
      group: 'g',
      json: false,
    });
  });

  test.each([
    [['--since'], '--since needs a value'],
    [['--since', 'yesterday'], '--since must be an ISO time or a duration like 15m (got "yesterday")'],
    [['--group', '--json'], '--group needs a value'],
    [['--bogus'], 'unknown argument "--bogus"'],
    [['--since', '1h', '--until', '2h'], '--since is after --until'],
  ])('%j is refused with exit 64 and a precise message', async (argv, message) => {
    const result = await run(argv);
    expect(result.exitCode).toBe(VERIFY_EXIT.usage);
    expect(result.err).toContain(message);
    expect(result.out).toBe('');
  });
});

describe('events verify exit code', () => {
  test('0 when every event is handled, 1 once one goes missing', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName();
    const event = await testDb.db.transaction(async (tx) => {
      const e = await enqueue(tx, { stream, type: 'ThingChanged', partitionKey: 'k', payload: {} });
      await tx.execute(drizzleSql`INSERT INTO events.processed_event (group_name, event_id) VALUES (${group}, ${e.eventId})`);
      return e;
    });
    const ok = await run(['--group', group]);
    expect(ok).toMatchObject({ exitCode: VERIFY_EXIT.ok });
    expect(ok.out).toMatch(/^verify: OK/);

    await testDb.sql`DELETE FROM events.processed_event WHERE event_id = ${event.eventId}`;
    // The group still leaves a trace (a lease), so it is still expected to handle the event.
    await testDb.sql`
      INSERT INTO events.stream_lease (stream_name, role, owner_id, lease_until, fencing_token)
      VALUES (${stream}, ${`consumer:${group}`}, 'host:1:abc', now(), 1)`;
    const failed = await run(['--group', group, '--json']);
    expect(failed.exitCode).toBe(VERIFY_EXIT.defects);
    expect(JSON.parse(failed.out)).toMatchObject({ ok: false, missing: 1 });
  });
});
