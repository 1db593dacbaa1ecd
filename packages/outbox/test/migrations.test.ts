import postgres from 'postgres';
import {
  createDatabaseIfMissing,
  outboxMigrations,
  runMigrations,
  withDatabaseName,
} from '../src';
import { isAtHead, migrationStatus } from '../src/migrations';
import { dropTestDatabase, testDatabaseBaseUrl, testDatabaseName } from '../src/testing';

/** The three queries of SPEC §1, exactly as the runbook gives them. */
const RUNBOOK_QUERIES = [
  `SELECT stream_name, COUNT(*) FROM events.outbox_event
WHERE published_at IS NULL GROUP BY stream_name;`,
  `SELECT stream_name, role, owner_id, lease_until, lease_until < now() AS expired
FROM events.stream_lease WHERE stream_name = 'stream:contracting:contract_changes';`,
  `DELETE FROM events.stream_lease
WHERE stream_name = 'stream:contracting:contract_changes' AND role = 'publisher';`,
  `SELECT owner_id, role, version, started_at, now() - heartbeat_at AS since_heartbeat,
       EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = n.backend_pid) AS session_alive
FROM events.relay_node n ORDER BY role, owner_id;`,
];

describe('migrations', () => {
  const url = withDatabaseName(testDatabaseBaseUrl(), testDatabaseName('mig'));
  let sql: postgres.Sql;

  beforeAll(async () => {
    expect(await createDatabaseIfMissing(url)).toBe(true);
    expect(await createDatabaseIfMissing(url)).toBe(false);
    sql = postgres(url, { max: 1, onnotice: () => undefined });
  });
  afterAll(async () => {
    await sql.end({ timeout: 5 });
    await dropTestDatabase(url);
  });

  test('an empty database is not at head; after migrating it is', async () => {
    expect(await isAtHead(sql, [outboxMigrations])).toBe(false);
    await runMigrations(url, [outboxMigrations]);
    expect(await isAtHead(sql, [outboxMigrations])).toBe(true);
  });

  test('a second run changes nothing', async () => {
    const snapshot = async () => ({
      migrations: await sql`SELECT id, hash, created_at FROM drizzle.__migrations_outbox ORDER BY id`,
      columns: await sql`SELECT table_name, column_name, data_type FROM information_schema.columns
                         WHERE table_schema = 'events' ORDER BY table_name, ordinal_position`,
      indexes: await sql`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'events' ORDER BY indexname`,
    });
    const before = await snapshot();
    await runMigrations(url, [outboxMigrations]);
    expect(await snapshot()).toEqual(before);
    const [status] = await migrationStatus(sql, [outboxMigrations]);
    expect(status).toMatchObject({ set: 'outbox', atHead: true });
  });

  test('concurrent runs are serialised and both succeed', async () => {
    await Promise.all([runMigrations(url, [outboxMigrations]), runMigrations(url, [outboxMigrations])]);
    expect(await isAtHead(sql, [outboxMigrations])).toBe(true);
  });

  test.each(RUNBOOK_QUERIES)('the runbook query runs: %s', async (query) => {
    await expect(sql.unsafe(query)).resolves.toBeDefined();
  });

  test('the drain of unpublished rows is served by the partial index', async () => {
    const [index] = await sql`SELECT indexdef FROM pg_indexes WHERE indexname = 'outbox_event_unpublished_idx'`;
    expect(index?.indexdef).toMatch(/\(stream_name, id\) WHERE \(published_at IS NULL\)/);
  });

  test('the outbox has no index on published_at (0004): marking a row published inserts it into the primary key and event_id index only', async () => {
    const indexes = await sql<{ indexname: string }[]>`
      SELECT indexname FROM pg_indexes WHERE schemaname = 'events' AND tablename = 'outbox_event' ORDER BY indexname`;
    expect(indexes.map((i) => i.indexname)).toEqual(['outbox_event_event_id_key', 'outbox_event_pkey', 'outbox_event_unpublished_idx']);
  });

  describe('CHECK constraints reject hand-written bad values', () => {
    const lease = (stream: string, role: string) => sql`
      INSERT INTO events.stream_lease (stream_name, role, owner_id, lease_until, fencing_token)
      VALUES (${stream}, ${role}, 'psql', now(), 1)`;

    test.each(['consumer', 'consumer:', 'publisher2', 'admin', 'consumer:bad group'])('lease role %p', async (role) => {
      await expect(lease('stream:contracting:contract_changes', role)).rejects.toThrow(/stream_lease_role_check/);
    });
    test.each(['contract_changes', 'stream:contracting', 'stream::x', 'stream:a:b:c'])('lease stream %p', async (stream) => {
      await expect(lease(stream, 'publisher')).rejects.toThrow(/stream_lease_stream_name_check/);
    });
    test('a partition stream and each valid role are accepted', async () => {
      await lease('stream:contracting:contract_changes:p3', 'consumer:billing');
      await lease('stream:contracting:contract_changes', 'publisher');
      await lease('stream:contracting:contract_changes', 'maintenance');
    });
    test.each(['orders', 'stream:orders', 'stream:a:b:p1', 'Stream:a:b'])('outbox stream %p', async (stream) => {
      await expect(sql`
        INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload)
        VALUES (gen_random_uuid(), ${stream}, 'k', 'T', '{}')`).rejects.toThrow(/outbox_event_stream_name_check/);
    });
    test('an empty event type or partition key', async () => {
      const insert = (type: string, key: string) => sql`
        INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload)
        VALUES (gen_random_uuid(), 'stream:a:b', ${key}, ${type}, '{}')`;
      await expect(insert('', 'k')).rejects.toThrow(/outbox_event_event_type_check/);
      await expect(insert('T', '')).rejects.toThrow(/outbox_event_partition_key_check/);
    });
    test('a dead letter status outside dead/replayed/discarded', async () => {
      await expect(sql`
        INSERT INTO events.dead_letter (group_name, stream_name, redis_entry_id, error_message, attempts, first_failed_at, status)
        VALUES ('g', 'stream:a:b', '1-0', 'boom', 1, now(), 'lost')`).rejects.toThrow(/dead_letter_status_check/);
    });
  });
});
