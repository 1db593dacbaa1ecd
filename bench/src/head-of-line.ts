/**
 * Head-of-line delay for another key (issue 19): how long owner B's event
 * waits when owner A's event, ahead of it on the same partition, meets a
 * downstream outage of `--outage` seconds. Runs the real consumer of one or
 * more builds of @petcover/outbox (`--outbox <package dir>`, repeatable: e.g.
 * a worktree of the commit before parking, then this one), in one process,
 * one after the other, against the same Postgres and Redis, and prints one
 * table row per build and retry configuration.
 *
 *   node dist/head-of-line.js --outbox /work/wt/before/packages/outbox --outbox ../packages/outbox [--outage 10]
 *
 * Configurations: each build's default retry schedule, and a schedule long
 * enough to ride out the outage (10 attempts from 200 ms, ≈30 s with the old
 * 10 s cap). Measured: B's append → B's effect committed, A's outcome (handled
 * after the outage, or dead-lettered) and A's append → handled.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';

type Outbox = typeof import('@petcover/outbox');
type Testing = typeof import('@petcover/outbox/testing');

interface Row {
  build: string;
  config: string;
  bWaitedMs: number;
  aOutcome: string;
  aDoneMs: number | null;
}

async function measure(dir: string, config: { name: string; maxAttempts?: number; retryBaseDelayMs?: number }, outageMs: number): Promise<Row> {
  const outbox = (await import(path.resolve(dir, 'dist', 'index.js'))) as Outbox;
  const testing = (await import(path.resolve(dir, 'dist', 'testing', 'index.js'))) as Testing;
  // That build's own drizzle and pino (a worktree of another commit has its own node_modules).
  const { sql } = (await import(path.resolve(dir, 'node_modules', 'drizzle-orm', 'index.js'))) as typeof import('drizzle-orm');
  const pino = ((await import(path.resolve(dir, 'node_modules', 'pino', 'pino.js'))) as { default: (options: object) => import('@petcover/outbox').ConsumerOptions['logger'] }).default;
  const database = await testing.createTestDatabase({ poolSize: 10 });
  const redis = testing.createTestRedis();
  const prefix = testing.uniqueRedisPrefix();
  const stream = testing.uniqueStreamName('hol');
  const group = testing.uniqueGroupName('hol');
  await database.sql`CREATE TABLE effect (key text NOT NULL, done_at timestamptz NOT NULL DEFAULT clock_timestamp())`;
  let outageUntil = 0;
  const registry = outbox.createHandlerRegistry().register('Recorded', {
    schema: z.object({ seq: z.number() }),
    async handle(event, ctx) {
      if (event.partitionKey === 'owner-a' && Date.now() < outageUntil) throw new Error('downstream unavailable');
      await ctx.tx.execute(sql`INSERT INTO effect (key) VALUES (${event.partitionKey})`);
    },
  });
  const consumer = outbox.createConsumer({
    db: database.db, sql: database.sql, redis, registry, streams: [{ name: stream }], group, keyPrefix: prefix,
    logger: pino({ level: 'silent' }), maxAttempts: config.maxAttempts, retryBaseDelayMs: config.retryBaseDelayMs,
  });
  consumer.start();
  const key = outbox.redisStreamKey(stream, prefix);
  try {
    await testing.waitFor(async () => (await database.sql`SELECT 1 FROM events.stream_lease WHERE owner_id = ${consumer.ownerId}`).length > 0, {
      timeoutMs: 30_000,
      description: 'partition leased',
    });
    outageUntil = Date.now() + outageMs;
    const aAppended = Date.now();
    await testing.appendTestEvents(redis, key, [testing.testStreamEvent({ type: 'Recorded', partitionKey: 'owner-a', payload: { seq: 1 } })]);
    // B comes a moment later, once A's first attempt failed.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const bAppended = Date.now();
    await testing.appendTestEvents(redis, key, [testing.testStreamEvent({ type: 'Recorded', partitionKey: 'owner-b', payload: { seq: 1 } })]);
    const doneAt = async (k: string) => {
      const [row] = await database.sql<{ ms: string }[]>`SELECT (extract(epoch FROM done_at) * 1000)::bigint::text AS ms FROM effect WHERE key = ${k}`;
      return row ? Number(row.ms) : null;
    };
    const bDone = await testing.waitFor(() => doneAt('owner-b'), { timeoutMs: 300_000, intervalMs: 20, description: 'owner-b handled' });
    const aResult = await testing.waitFor(async () => {
      const done = await doneAt('owner-a');
      if (done !== null) return { outcome: 'handled', done };
      const [letter] = await database.sql`SELECT 1 FROM events.dead_letter WHERE group_name = ${group}`;
      return letter ? { outcome: 'dead-lettered', done: null } : null;
    }, { timeoutMs: 600_000, intervalMs: 50, description: 'owner-a handled or dead-lettered' });
    return {
      build: dir,
      config: config.name,
      bWaitedMs: bDone - bAppended,
      aOutcome: aResult.outcome,
      aDoneMs: aResult.done === null ? null : aResult.done - aAppended,
    };
  } finally {
    await consumer.stop();
    await testing.deleteKeysWithPrefix(redis, prefix);
    redis.disconnect();
    await database.drop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { outbox: { type: 'string', multiple: true }, outage: { type: 'string', default: '10' } } });
  const dirs = values.outbox ?? [];
  if (dirs.length === 0) throw new Error('give at least one --outbox <dir of a built @petcover/outbox>');
  const outageMs = Number(values.outage) * 1000;
  const configs = [{ name: 'defaults' }, { name: '10 attempts from 200 ms', maxAttempts: 10, retryBaseDelayMs: 200 }];
  const rows: Row[] = [];
  for (const config of configs) for (const dir of dirs) rows.push(await measure(dir, config, outageMs));
  process.stdout.write(`outage of owner-a's downstream: ${outageMs / 1000} s; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  process.stdout.write('| build | retry schedule | owner-b waited (append → handled) | owner-a | owner-a append → handled |\n|---|---|---|---|---|\n');
  for (const r of rows) {
    process.stdout.write(`| ${r.build} | ${r.config} | ${r.bWaitedMs} ms | ${r.aOutcome} | ${r.aDoneMs === null ? '-' : `${r.aDoneMs} ms`} |\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
