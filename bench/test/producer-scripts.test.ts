/**
 * The pgbench producer transactions, run for real by pgbench against a fresh
 * bench database: each writes what its system's own API writes, once per
 * transaction, with the domain row carrying the same sequence number.
 */
import { createPostgresBackend, Queue } from 'bullmq';
import { runMigrations as runGraphileMigrations } from 'graphile-worker';
import PgBoss from 'pg-boss';
import { enqueue, OUTBOX_NOTIFY_CHANNEL, withDatabaseName } from '@petcover/outbox';
import { waitFor } from '@petcover/outbox/testing';
import { DEFAULT_DATABASE_URL, readRedisConnection } from '@petcover/service-kit';
import { BENCH_EVENT_TYPE } from '../src/bench-event';
import { createBenchEnvironment, type BenchEnvironment } from '../src/bench-environment';
import { BULLMQ_QUEUE, PG_BOSS_QUEUE } from '../src/peers/peer-names';
import { bullmqPostgresAddJobScript } from '../src/producer-scripts/bullmq-postgres-add-job';
import { runPgbench } from '../src/pgbench';
import { graphileWorkerAddJobScript } from '../src/producer-scripts/graphile-worker-add-job';
import { petcoverEnqueueScript } from '../src/producer-scripts/petcover-enqueue';
import { pgBossSendScript } from '../src/producer-scripts/pg-boss-send';
import type { ProducerScript } from '../src/producer-scripts/producer-script';

jest.setTimeout(120_000);

let env: BenchEnvironment;

beforeAll(async () => {
  env = await createBenchEnvironment(process.env.DATABASE_URL || withDatabaseName(DEFAULT_DATABASE_URL, 'postgres'), readRedisConnection(process.env));
});

afterAll(async () => {
  await env?.destroy();
});

beforeEach(async () => {
  await env.reset();
});

/** Two clients, `perClient` transactions each. */
const runScript = (script: ProducerScript, perClient: number) =>
  runPgbench({ databaseUrl: env.databaseUrl, script: script.script, variables: script.variables, clients: 2, transactions: perClient });

const domainSeqs = async () => (await env.db.sql<{ seq: string }[]>`SELECT seq::text FROM bench.domain_row ORDER BY seq`).map((r) => Number(r.seq));

describe("our producer transaction (enqueue's statement, captured)", () => {
  it('writes one outbox row per transaction as enqueue does, notifies the stream, and stamps the domain row last', async () => {
    const stream = 'stream:bench:script_test';
    const script = await petcoverEnqueueScript(env.databaseUrl, stream);
    expect(script.script).toMatch(/^BEGIN;\n[\s\S]*pg_notify[\s\S]*INSERT INTO bench\.domain_row[^\n]*\nCOMMIT;\n$/);

    const notified: string[] = [];
    const listening = await env.db.sql.listen(OUTBOX_NOTIFY_CHANNEL, (payload) => notified.push(payload));
    try {
      const outcome = await runScript(script, 3);
      expect(outcome).toMatchObject({ processed: 6, failed: 0 });
      await waitFor(() => notified.length > 0, { timeoutMs: 20_000, description: 'a NOTIFY on the outbox channel' });
      expect(notified[0]).toBe(stream);
    } finally {
      await listening.unlisten();
    }

    expect(await domainSeqs()).toEqual([1, 2, 3, 4, 5, 6]);
    const rows = await env.db.sql<{ seq: string; partition_key: string; stream_name: string; event_type: string; headers: unknown; version: string }[]>`
      SELECT payload->>'seq' AS seq, partition_key, stream_name, event_type, headers, substring(event_id::text, 15, 1) AS version
      FROM events.outbox_event ORDER BY (payload->>'seq')::bigint`;
    // One row per transaction. Not in id order: the two clients take a seq and an outbox id each, and may interleave.
    expect(rows.map((r) => Number(r.seq))).toEqual([1, 2, 3, 4, 5, 6]);
    for (const row of rows) {
      expect(row).toMatchObject({ partition_key: `entity-${Number(row.seq) % 1024}`, stream_name: stream, event_type: BENCH_EVENT_TYPE, headers: {}, version: '7' });
    }
    // Same columns as a row enqueue itself writes.
    await env.db.db.transaction(async (tx) => void (await enqueue(tx, { stream, type: BENCH_EVENT_TYPE, partitionKey: 'entity-7', payload: { seq: 7 } })));
    const [fromScript, fromEnqueue] = await env.db.sql<Record<string, unknown>[]>`
      SELECT stream_name, event_type, headers, jsonb_typeof(payload) AS payload_type, published_at, substring(event_id::text, 15, 1) AS version
      FROM events.outbox_event WHERE payload->>'seq' IN ('1', '7') ORDER BY id`;
    expect(fromEnqueue).toBeDefined();
    expect(fromScript).toEqual(fromEnqueue);
  });
});

describe("graphile-worker's producer transaction (add_job)", () => {
  it('adds one job per transaction whose payload carries the domain row\'s seq', async () => {
    await runGraphileMigrations({ connectionString: env.databaseUrl });
    expect(await runScript(graphileWorkerAddJobScript(), 2)).toMatchObject({ processed: 4, failed: 0 });
    const jobs = await env.db.sql<{ seq: string }[]>`SELECT payload->>'seq' AS seq FROM graphile_worker._private_jobs ORDER BY (payload->>'seq')::bigint`;
    expect(jobs.map((j) => Number(j.seq))).toEqual(await domainSeqs());
    expect(jobs).toHaveLength(4);
  });
});

describe("pg-boss's producer transaction (send()'s INSERT, captured)", () => {
  it('inserts one job per transaction into its queue, with the domain row\'s seq', async () => {
    const boss = new PgBoss({ connectionString: env.databaseUrl, max: 1, supervise: false, schedule: false, migrate: true });
    boss.on('error', () => undefined);
    await boss.start();
    await boss.createQueue(PG_BOSS_QUEUE);
    await boss.stop({ graceful: false, wait: true });
    expect(await runScript(await pgBossSendScript(), 2)).toMatchObject({ processed: 4, failed: 0 });
    const jobs = await env.db.sql<{ seq: string; state: string }[]>`SELECT data->>'seq' AS seq, state::text FROM pgboss.job WHERE name = ${PG_BOSS_QUEUE} ORDER BY (data->>'seq')::bigint`;
    expect(jobs.map((j) => Number(j.seq))).toEqual(await domainSeqs());
    expect(new Set(jobs.map((j) => j.state))).toEqual(new Set(['created']));
  });
});

describe("BullMQ's PostgreSQL backend producer transaction (add_job)", () => {
  it("adds one waiting job per transaction, numbered by the backend, with the domain row's seq", async () => {
    const queue = new Queue(BULLMQ_QUEUE, { connection: { connectionString: env.databaseUrl, max: 1, migrate: true } }, createPostgresBackend);
    await queue.waitUntilReady();
    await queue.close();
    expect(await runScript(bullmqPostgresAddJobScript(), 2)).toMatchObject({ processed: 4, failed: 0 });
    const jobs = await env.db.sql<{ seq: string; state: string; id: string }[]>`
      SELECT data->>'seq' AS seq, state::text, id FROM bullmq.job WHERE queue = ${BULLMQ_QUEUE} ORDER BY (data->>'seq')::bigint`;
    expect(jobs.map((j) => Number(j.seq))).toEqual(await domainSeqs());
    expect(new Set(jobs.map((j) => j.state))).toEqual(new Set(['waiting']));
    expect(new Set(jobs.map((j) => j.id)).size).toBe(4);
  });
});

describe('pgbench session settings', () => {
  it("apply to pgbench's own sessions only (the keeping-up scenario's async producer)", async () => {
    await env.db.sql.unsafe('CREATE TABLE IF NOT EXISTS bench.seen_setting (value text NOT NULL)');
    await env.db.sql.unsafe('TRUNCATE bench.seen_setting');
    const script = "INSERT INTO bench.seen_setting SELECT current_setting('synchronous_commit');\n";
    await runPgbench({ databaseUrl: env.databaseUrl, script, clients: 1, transactions: 1, sessionSettings: { synchronous_commit: 'off' } });
    await runPgbench({ databaseUrl: env.databaseUrl, script, clients: 1, transactions: 1 });
    const seen = await env.db.sql<{ value: string }[]>`SELECT value FROM bench.seen_setting`;
    expect(seen.map((r) => r.value)).toEqual(['off', 'on']);
    const [ours] = await env.db.sql<{ value: string }[]>`SELECT current_setting('synchronous_commit') AS value`;
    expect(ours!.value).toBe('on');
  });

  it('refuses a setting that is not a plain name and value, before starting pgbench', async () => {
    await expect(
      runPgbench({ databaseUrl: env.databaseUrl, script: 'SELECT 1;\n', clients: 1, transactions: 1, sessionSettings: { synchronous_commit: 'off -c work_mem=1GB' } }),
    ).rejects.toThrow('pgbench session setting synchronous_commit=off -c work_mem=1GB is not a plain name and value');
  });
});
