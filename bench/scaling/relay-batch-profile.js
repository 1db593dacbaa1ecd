#!/usr/bin/env node
/**
 * Profile of one relay batch (issue 20: "relay ≥ 50 % of batched INSERT").
 *
 *   node bench/scaling/relay-batch-profile.js steps   [--rows 200000] [--batch 500] [--explain-every 25]
 *   node bench/scaling/relay-batch-profile.js overlap [--rows 200000] [--batch 500]
 *   node bench/scaling/relay-batch-profile.js insert  [--statements 200]
 *
 * Needs `pnpm build` (it loads bench/dist and packages/outbox/dist). Uses the
 * bench's own environment (a fresh petcover_bench_* database with the outbox
 * migrations) and prefill (`prefillOutbox`), and a DedicatedRedis of its own
 * (SLOWLOG is switched to log every command there, never on the shared Redis).
 *
 * steps:   the publisher's own statements (selectUnpublishedBatch, appendBatch,
 *          recordEntries), one after the other, batch after batch, each timed
 *          on the wall clock; server side: the executor time of each statement
 *          (auto_explain, log_analyze off, sent to the client as NOTICE), the
 *          Lua script's time (SLOWLOG), and every `--explain-every`th batch
 *          also with EXPLAIN (ANALYZE, BUFFERS, WAL) through auto_explain.
 * overlap: the real publisher (createPublisher) draining in this process,
 *          with those three functions wrapped to record start/end times,
 *          to see whether the mark of batch n runs under select+append of n+1.
 * insert:  the bench's batched INSERT (1,000-row INSERT ... SELECT into
 *          bench.outbox_shape) timed the same way, one connection.
 */
'use strict';
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const ROOT = path.resolve(__dirname, '..', '..');
const postgres = require(path.join(ROOT, 'packages/outbox/node_modules/postgres'));
const pino = require(path.join(ROOT, 'packages/outbox/node_modules/pino'));
const { Registry } = require(path.join(ROOT, 'packages/outbox/node_modules/prom-client'));
const outbox = require(path.join(ROOT, 'packages/outbox/dist/index.js'));
const statements = require(path.join(ROOT, 'packages/outbox/dist/publisher/statements.js'));
const redisScripts = require(path.join(ROOT, 'packages/outbox/dist/publisher/redis-scripts.js'));
const streams = require(path.join(ROOT, 'packages/outbox/dist/streams.js'));
const { startDedicatedRedis } = require(path.join(ROOT, 'packages/outbox/dist/testing/index.js'));
const { createRedisClient } = require(path.join(ROOT, 'packages/service-kit/dist/index.js'));
const { createBenchEnvironment } = require(path.join(ROOT, 'bench/dist/bench-environment.js'));
const { prefillOutbox } = require(path.join(ROOT, 'bench/dist/workload.js'));

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
const mode = process.argv[2] ?? 'steps';
const ROWS = arg('rows', 200_000);
const BATCH = arg('batch', 500);
const EXPLAIN_EVERY = arg('explain-every', 25);
const BYTES = 8 * 1024 * 1024;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(2) : '—');
function summary(label, xs, perRows) {
  const k = 1000 / perRows;
  console.log(`${label.padEnd(34)} n=${String(xs.length).padStart(4)}  median ${fmt(median(xs))} ms  mean ${fmt(mean(xs))}  p90 ${fmt(pct(xs, 0.9))}  per 1,000 rows (mean): ${fmt(mean(xs) * k)} ms`);
}

/** A one-connection client whose statements are logged by auto_explain as NOTICEs (durations, optionally plans). */
function explainingClient(url, onPlan) {
  return postgres(url, {
    max: 1,
    onnotice: (n) => onPlan(n.message),
    connection: { application_name: 'relay-batch-profile' },
  });
}
async function autoExplain(sql, analyze) {
  await sql.unsafe(`LOAD 'auto_explain'`);
  await sql.unsafe(`SET auto_explain.log_min_duration = 0`);
  await sql.unsafe(`SET auto_explain.log_level = 'notice'`);
  await sql.unsafe(`SET auto_explain.log_analyze = ${analyze ? 'on' : 'off'}`);
  await sql.unsafe(`SET auto_explain.log_buffers = ${analyze ? 'on' : 'off'}`);
  await sql.unsafe(`SET auto_explain.log_wal = ${analyze ? 'on' : 'off'}`);
  await sql.unsafe(`SET auto_explain.log_timing = ${analyze ? 'on' : 'off'}`);
  // --generic: the explained batches show the generic plan (what a pooled connection runs after 5 executions).
  if (analyze && process.argv.includes('--generic')) await sql.unsafe(`SET plan_cache_mode = force_generic_plan`);
}
const durationOf = (plan) => Number(/duration: ([\d.]+) ms/.exec(plan)?.[1] ?? NaN);

/** CPU seconds (user + system) of a process, from /proc (clock ticks of 10 ms). */
function procCpuSeconds(pid) {
  try {
    const fields = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}
async function backendPids(sql, applicationName) {
  const rows = await sql`SELECT pid FROM pg_stat_activity WHERE application_name = ${applicationName} AND datname = current_database()`;
  return rows.map((r) => r.pid);
}

async function environment() {
  const redisServer = await startDedicatedRedis();
  const redisConnection = { url: redisServer.url, cluster: false };
  const env = await createBenchEnvironment('postgres://postgres@127.0.0.1:5432/postgres', redisConnection);
  await env.reset();
  return { env, redisServer, redisConnection };
}

async function steps() {
  const { env, redisServer, redisConnection } = await environment();
  const redis = createRedisClient(redisConnection, { maxRetriesPerRequest: 3 });
  const stream = 'stream:bench:relay_profile_0';
  const redisKey = streams.redisStreamKey(streams.partitionStreamName(stream, 0, 1), 'bench:profile:');
  try {
    const committedAt = await prefillOutbox(env.db.sql, [stream], ROWS);
    // --analyze: fresh statistics (the bench's own reset analyzed the empty table; autovacuum may be off).
    if (process.argv.includes('--analyze')) await env.db.sql`ANALYZE events.outbox_event`;
    console.log(`prefilled ${ROWS} rows (bench prefillOutbox), committed at ${committedAt}; batch ${BATCH}${process.argv.includes('--analyze') ? ', ANALYZEd' : ''}`);
    let plans = [];
    const plain = explainingClient(env.databaseUrl, (m) => plans.push(m));
    const analyzed = explainingClient(env.databaseUrl, (m) => plans.push(m));
    await autoExplain(plain, false);
    await autoExplain(analyzed, true);
    const ownerId = 'profile-owner';
    const grant = await outbox.acquireLease(plain, { streamName: stream, role: 'publisher', ownerId, ttlMs: 600_000 });
    const databaseId = await statements.databaseIdentity(plain);
    const writer = { fencingToken: grant.fencingToken, databaseId };
    await redisScripts.stampFence(redis, redisKey, writer);
    await redis.config('SET', 'slowlog-log-slower-than', '0');
    await redis.config('SET', 'slowlog-max-len', '100000');
    await redis.slowlog('RESET');
    let head = '0-0';
    let cursor = '0';
    const t = { select: [], selectServer: [], append: [], appendLua: [], mark: [], markServer: [], loop: [] };
    const explained = [];
    let batches = 0;
    const started = performance.now();
    for (;;) {
      const explain = EXPLAIN_EVERY > 0 && batches % EXPLAIN_EVERY === EXPLAIN_EVERY - 1;
      const sql = explain ? analyzed : plain;
      const l0 = performance.now();
      plans = [];
      const s0 = performance.now();
      const batch = await statements.selectUnpublishedBatch(sql, stream, cursor, { rows: BATCH, bytes: BYTES });
      const s1 = performance.now();
      const selectPlan = plans.find((p) => p.includes('outbox_event')) ?? '';
      if (batch.rows.length === 0) break;
      await redis.slowlog('RESET');
      const a0 = performance.now();
      const result = await redisScripts.appendBatch(redis, redisKey, writer, head, batch.rows);
      const a1 = performance.now();
      if (result.status !== 'ok') throw new Error(`append: ${JSON.stringify(result)}`);
      const slow = await redis.slowlog('GET', 10);
      const lua = slow.find((e) => String(e[3]?.[0]).toLowerCase().startsWith('eval'));
      head = result.entryIds[result.entryIds.length - 1];
      const record = {
        ids: batch.rows.map((r) => r.id),
        eventIds: batch.rows.map((r) => r.eventId),
        entryIds: result.entryIds,
        heads: [{ redisKey, lastEntryId: head, lastOutboxId: batch.rows[batch.rows.length - 1].id }],
      };
      plans = [];
      const m0 = performance.now();
      const marked = await statements.recordEntries(sql, stream, ownerId, grant.fencingToken, record);
      const m1 = performance.now();
      const markPlan = plans.find((p) => p.includes('outbox_event')) ?? '';
      if (!marked.leaseHeld || marked.updated !== batch.rows.length) throw new Error(`mark: ${JSON.stringify(marked)}`);
      cursor = batch.rows[batch.rows.length - 1].id;
      const l1 = performance.now();
      batches += 1;
      if (explain) {
        explained.push({ batch: batches, rows: batch.rows.length, select: selectPlan, mark: markPlan, wall: { select: s1 - s0, append: a1 - a0, mark: m1 - m0 } });
        continue; // timings under EXPLAIN ANALYZE are inflated: kept apart
      }
      t.select.push(s1 - s0);
      t.selectServer.push(durationOf(selectPlan));
      t.append.push(a1 - a0);
      t.appendLua.push(lua ? Number(lua[2]) / 1000 : NaN);
      t.mark.push(m1 - m0);
      t.markServer.push(durationOf(markPlan));
      t.loop.push(l1 - l0);
    }
    const total = performance.now() - started;
    if (process.env.PROFILE_DUMP) require('node:fs').writeFileSync(process.env.PROFILE_DUMP, JSON.stringify(t));
    console.log(`\n${batches} batches of ${BATCH} rows in ${(total / 1000).toFixed(1)} s, sequential (no overlap), incl. ${explained.length} explained batches: ${Math.round((ROWS / total) * 1000)} rows/s`);
    summary('select, wall (client)', t.select, BATCH);
    summary('select, executor (auto_explain)', t.selectServer, BATCH);
    summary('append, wall (client)', t.append, BATCH);
    summary('append, Lua in Redis (SLOWLOG)', t.appendLua.filter(Number.isFinite), BATCH);
    summary('mark, wall (client, incl. commit)', t.mark, BATCH);
    summary('mark, executor (auto_explain)', t.markServer, BATCH);
    summary('whole batch, wall', t.loop, BATCH);
    // Early vs late batches (index bloat from dead entries grows as the drain goes).
    const q = Math.floor(t.select.length / 4);
    for (const k of ['select', 'append', 'mark']) {
      console.log(`  ${k}: first quarter median ${fmt(median(t[k].slice(0, q)))} ms, last quarter ${fmt(median(t[k].slice(-q)))} ms`);
    }
    for (const e of [explained[0], explained[Math.floor(explained.length / 2)], explained[explained.length - 1]].filter(Boolean)) {
      console.log(`\n---- batch ${e.batch} (${e.rows} rows) under EXPLAIN ANALYZE: wall select ${fmt(e.wall.select)} ms, append ${fmt(e.wall.append)} ms, mark ${fmt(e.wall.mark)} ms`);
      console.log(e.select.replace(/\n\s*Query Text:[\s\S]*?(?=\n\S|\n\s*(Sort|Subquery|Incremental|Limit|WindowAgg|Nested|Index|Seq|Hash|Merge|Result|Insert|Update|CTE|Aggregate|Function))/, '\n  [query text omitted]'));
      console.log(e.mark.replace(/\n\s*Query Text:[\s\S]*?(?=\n\S|\n\s*(Sort|Subquery|Incremental|Limit|WindowAgg|Nested|Index|Seq|Hash|Merge|Result|Insert|Update|CTE|Aggregate|Function))/, '\n  [query text omitted]'));
    }
    await plain.end();
    await analyzed.end();
  } finally {
    redis.disconnect();
    await env.destroy();
    await redisServer.destroy();
  }
}

async function insert() {
  const { env, redisServer } = await environment();
  const N = arg('statements', 200);
  try {
    let plans = [];
    const plain = explainingClient(env.databaseUrl, (m) => plans.push(m));
    const analyzed = explainingClient(env.databaseUrl, (m) => plans.push(m));
    await autoExplain(plain, false);
    await autoExplain(analyzed, true);
    const text = `INSERT INTO bench.outbox_shape (event_id, stream_name, partition_key, event_type, payload, headers)
SELECT gen_random_uuid(), 'stream:bench:limits', 'entity-' || (g % 1024), 'BenchEventHappened', jsonb_build_object('seq', g), '{}'::jsonb
FROM generate_series(1, 1000) AS g`;
    const wall = [];
    const server = [];
    let sample = '';
    const [{ pid }] = await plain`SELECT pg_backend_pid() AS pid`;
    const cpuBefore = procCpuSeconds(pid);
    let plainStatements = 0;
    for (let i = 0; i < N; i++) {
      const explain = i === Math.floor(N / 2);
      plans = [];
      const t0 = performance.now();
      await (explain ? analyzed : plain).unsafe(text); // simple protocol, as pgbench -M simple
      const t1 = performance.now();
      if (explain) sample = plans.join('\n');
      else {
        plainStatements += 1;
        wall.push(t1 - t0);
        server.push(durationOf(plans.join('\n')));
      }
    }
    summary('batched INSERT 1,000 rows, wall', wall, 1000);
    summary('batched INSERT, executor', server, 1000);
    console.log(`CPU per 1,000 rows: its Postgres backend ${(((procCpuSeconds(pid) - cpuBefore) * 1000) / plainStatements).toFixed(1)} ms`);
    console.log(sample);
    await plain.end();
    await analyzed.end();
  } finally {
    await env.destroy();
    await redisServer.destroy();
  }
}

async function overlap() {
  const { env, redisServer, redisConnection } = await environment();
  const events = [];
  const wrap = (mod, name, kind) => {
    const original = mod[name];
    mod[name] = (...args) => {
      const e = { kind, start: performance.now(), end: NaN, rows: 0 };
      events.push(e);
      const p = original(...args);
      p.then(
        (r) => {
          e.end = performance.now();
          e.rows = kind === 'select' ? r.rows.length : kind === 'mark' ? r.updated : args[4].length;
        },
        () => {
          e.end = performance.now();
        },
      );
      return p;
    };
  };
  // --no-mark: what a per-stream high-water mark would leave of the mark: one fenced one-row
  // position write per batch instead of the N-row UPDATE (rows stay unpublished; the run ends
  // when Redis holds every row, before the drain's next sweep would append them again).
  const noMark = process.argv.includes('--no-mark');
  if (noMark) {
    statements.recordEntries = async (sql, stream, ownerId, fencingToken, record) => {
      let held = true;
      for (const h of record.heads) held = (await statements.recordPosition(sql, stream, ownerId, fencingToken, h.redisKey, h.lastEntryId)) && held;
      return { leaseHeld: held, updated: record.ids.length };
    };
  }
  wrap(statements, 'selectUnpublishedBatch', 'select');
  wrap(statements, 'recordEntries', 'mark');
  wrap(redisScripts, 'appendBatch', 'append');
  const stream = 'stream:bench:relay_overlap_0';
  const database = outbox.connectDatabase(env.databaseUrl, { max: 10, applicationName: 'events-publisher' });
  const redis = createRedisClient(redisConnection, { maxRetriesPerRequest: 3 });
  const publisher = outbox.createPublisher({
    sql: database.sql,
    redis,
    logger: pino({ level: 'warn' }),
    registry: new Registry(),
    partitions: { [stream]: 1 },
    keyPrefix: 'bench:overlap:',
    batchSize: BATCH,
    pollIntervalMs: 1000,
    leaseTtlMs: 30_000,
  });
  try {
    await publisher.start();
    const deadline = Date.now() + 10_000;
    while (publisher.heldStreams().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const committedAt = await prefillOutbox(env.db.sql, [stream], ROWS);
    const pidsBefore = await backendPids(env.db.sql, 'events-publisher');
    const pgBefore = new Map(pidsBefore.map((pid) => [pid, procCpuSeconds(pid)]));
    const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))[1]);
    const redisBefore = procCpuSeconds(redisPid);
    const nodeBefore = process.cpuUsage();
    const t0 = performance.now();
    const streamKey = streams.redisStreamKey(streams.partitionStreamName(stream, 0, 1), 'bench:overlap:');
    for (;;) {
      if (noMark) {
        if ((await redis.xlen(streamKey)) >= ROWS) break;
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const [row] = await env.db.sql`SELECT count(*)::int AS n FROM events.outbox_event WHERE published_at IS NULL`;
      if (row.n === 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const nodeCpu = process.cpuUsage(nodeBefore);
    const pidsAfter = await backendPids(env.db.sql, 'events-publisher');
    const pgCpu = pidsAfter.reduce((sum, pid) => sum + procCpuSeconds(pid) - (pgBefore.get(pid) ?? 0), 0);
    const redisCpu = procCpuSeconds(redisPid) - redisBefore;
    const perK = (seconds) => ((seconds * 1000 * 1000) / ROWS).toFixed(1);
    console.log(`CPU per 1,000 rows: publisher (node, this process) ${perK((nodeCpu.user + nodeCpu.system) / 1e6)} ms, its Postgres backends (${pidsAfter.length}) ${perK(pgCpu)} ms, redis-server ${perK(redisCpu)} ms`);
    if (noMark) {
      console.log(`publisher in-process, batch ${BATCH}, NO per-row mark: ${ROWS} rows in Redis after ${(performance.now() - t0).toFixed(0)} ms (probe)`);
    } else {
      const [span] = await env.db.sql.unsafe(`SELECT (extract(epoch FROM max(published_at) - $1::timestamptz) * 1000)::float8 AS ms FROM events.outbox_event`, [committedAt]);
      console.log(`publisher in-process, batch ${BATCH}: ${ROWS} rows, commit → last published_at ${span.ms.toFixed(0)} ms = ${Math.round((ROWS / span.ms) * 1000)} events/s (probe saw it after ${(performance.now() - t0).toFixed(0)} ms)`);
    }
    const perKind = new Map();
    const work = events
      .filter((e) => e.start >= t0 - 5000 && e.rows > 0)
      .sort((a, b) => a.start - b.start)
      .filter((e) => {
        const seen = (perKind.get(e.kind) ?? 0) + 1;
        perKind.set(e.kind, seen);
        return seen <= Math.ceil(ROWS / BATCH); // the first pass only (--no-mark would go round again)
      });
    const selects = work.filter((e) => e.kind === 'select');
    const appends = work.filter((e) => e.kind === 'append');
    const marks = work.filter((e) => e.kind === 'mark');
    const first = Math.min(...work.map((e) => e.start));
    const last = Math.max(...work.map((e) => e.end));
    const d = (e) => e.end - e.start;
    const n = selects.length;
    console.log(`batches: ${n} selects, ${appends.length} appends, ${marks.length} marks; first select → last mark end ${(last - first).toFixed(0)} ms`);
    summary('select', selects.map(d), BATCH);
    summary('append', appends.map(d), BATCH);
    summary('mark', marks.map(d), BATCH);
    // Loop critical path: select(n) → append(n) → [wait for mark(n-1)] → start mark(n) → select(n+1).
    let waitMark = 0;
    let overlapped = 0;
    let gaps = 0;
    for (let i = 0; i < marks.length; i++) {
      const m = marks[i];
      const nextSelect = selects[i + 1];
      if (nextSelect && appends[i + 1]) {
        // the time mark(i) was still running after append(i+1) ended = what the loop waited for
        waitMark += Math.max(0, m.end - appends[i + 1].end);
        overlapped += Math.max(0, Math.min(m.end, appends[i + 1].end) - Math.max(m.start, nextSelect.start));
      }
      if (nextSelect) gaps += Math.max(0, nextSelect.start - Math.max(m.start, appends[i].end));
    }
    const sumSel = selects.map(d).reduce((a, b) => a + b, 0);
    const sumApp = appends.map(d).reduce((a, b) => a + b, 0);
    const sumMark = marks.map(d).reduce((a, b) => a + b, 0);
    const wall = last - first;
    const k = 1000 / (ROWS);
    console.log(`per 1,000 rows: select ${fmt(sumSel * k)} ms, append ${fmt(sumApp * k)} ms, mark ${fmt(sumMark * k)} ms (of which under select+append of the next batch ${fmt(overlapped * k)} ms; loop waited on the mark ${fmt(waitMark * k)} ms), gaps between mark start and next select ${fmt(gaps * k)} ms; wall ${fmt(wall * k)} ms → ${Math.round(ROWS / wall * 1000)} rows/s`);
    console.log(`mark durations in order (ms): ${marks.map((m) => d(m).toFixed(0)).join(' ')}`);
    const timeline = [...work].sort((a, b) => a.start - b.start).slice(30, 48);
    console.log('timeline sample (ms from first select):');
    for (const e of timeline) console.log(`  ${e.kind.padEnd(6)} ${fmt(e.start - first).padStart(9)} → ${fmt(e.end - first).padStart(9)}  (${fmt(d(e))} ms, ${e.rows} rows)`);
  } finally {
    await publisher.stop();
    redis.disconnect();
    await database.close();
    await env.destroy();
    await redisServer.destroy();
  }
}

/**
 * variants: what the parts would cost done otherwise, on the same prefilled outbox.
 *  - the select as the publisher sends it vs the same rows without text rendering and byte window;
 *  - a one-row fenced position write (what a per-stream high-water mark would write per batch);
 *  - the Lua append at 1..2,000 entries (fixed cost and cost per entry, from SLOWLOG).
 */
async function variants() {
  const { env, redisServer, redisConnection } = await environment();
  const redis = createRedisClient(redisConnection, { maxRetriesPerRequest: 3 });
  const stream = 'stream:bench:relay_variants_0';
  const REPS = arg('reps', 40);
  try {
    await prefillOutbox(env.db.sql, [stream], ROWS);
    let plans = [];
    const sql = explainingClient(env.databaseUrl, (m) => plans.push(m));
    await autoExplain(sql, false);
    const timed = async (fn) => {
      plans = [];
      const t0 = performance.now();
      const r = await fn();
      return { wall: performance.now() - t0, server: durationOf(plans.join('\n')), r };
    };
    const report = (label, xs) =>
      console.log(`${label.padEnd(58)} wall median ${fmt(median(xs.map((x) => x.wall)))} ms, executor median ${fmt(median(xs.map((x) => x.server)))} ms`);
    const a = [];
    const b = [];
    const [mid] = await env.db.sql`SELECT (min(id) + ${ROWS / 2}::int)::text AS id FROM events.outbox_event`;
    // The select as main d55f786 sent it: each payload rendered twice (output, and octet_length beside it).
    const twice = [];
    for (let i = 0; i < REPS; i++) {
      twice.push(await timed(() => sql`
        SELECT id::text, event_id::text, event_type, partition_key, payload, headers, created_at, is_object, row_bytes::text, candidates::text
        FROM (
          SELECT c.*, sum(c.row_bytes) OVER (ORDER BY c.id ROWS UNBOUNDED PRECEDING) AS running_bytes, count(*) OVER () AS candidates
          FROM (
            SELECT id, event_id, event_type, partition_key, payload::text AS payload, headers::text AS headers,
                   to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at,
                   jsonb_typeof(payload) = 'object' AS is_object,
                   octet_length(payload::text) + octet_length(headers::text) AS row_bytes
            FROM events.outbox_event WHERE stream_name = ${stream} AND published_at IS NULL AND id > ${mid.id}::bigint
            ORDER BY id LIMIT ${BATCH} OFFSET 0
          ) c
        ) w
        WHERE running_bytes - row_bytes < ${BYTES}
        ORDER BY w.id`));
      a.push(await timed(() => statements.selectUnpublishedBatch(sql, stream, mid.id, { rows: BATCH, bytes: BYTES })));
      b.push(await timed(() => sql`
        SELECT id, event_id, event_type, partition_key, payload, headers, created_at FROM events.outbox_event
        WHERE stream_name = ${stream} AND published_at IS NULL AND id > ${mid.id}::bigint ORDER BY id LIMIT ${BATCH}`));
    }
    report(`select ${BATCH} rows as main d55f786 did (payload rendered twice)`, twice);
    report(`select ${BATCH} rows as the publisher does (text, byte window)`, a);
    report(`select ${BATCH} rows, jsonb as is, no window (parsed by postgres.js)`, b);
    const ownerId = 'variants-owner';
    const grant = await outbox.acquireLease(sql, { streamName: stream, role: 'publisher', ownerId, ttlMs: 600_000 });
    const redisKey = streams.redisStreamKey(streams.partitionStreamName(stream, 0, 1), 'bench:variants:');
    const hw = [];
    for (let i = 0; i < REPS; i++) hw.push(await timed(() => statements.recordPosition(sql, stream, ownerId, grant.fencingToken, redisKey, `${1_700_000_000_000 + i}-0`)));
    report('one-row fenced position write (recordPosition), incl. commit', hw);
    // The Lua append at several sizes, on a scratch stream.
    const rows = (await statements.selectUnpublishedBatch(sql, stream, '0', { rows: 2000, bytes: BYTES })).rows;
    const writer = { fencingToken: grant.fencingToken, databaseId: await statements.databaseIdentity(sql) };
    await redisScripts.stampFence(redis, redisKey, writer);
    await redis.config('SET', 'slowlog-log-slower-than', '0');
    let head = '0-0';
    for (const size of [1, 100, 500, 1000, 2000]) {
      const lua = [];
      const wall = [];
      for (let i = 0; i < 10; i++) {
        await redis.slowlog('RESET');
        const t0 = performance.now();
        const result = await redisScripts.appendBatch(redis, redisKey, writer, head, rows.slice(0, size));
        wall.push(performance.now() - t0);
        head = result.entryIds[result.entryIds.length - 1];
        const slow = await redis.slowlog('GET', 10);
        lua.push(Number(slow.find((e) => String(e[3]?.[0]).toLowerCase().startsWith('eval'))[2]) / 1000);
      }
      console.log(`append.lua ${String(size).padStart(5)} entries: Lua median ${fmt(median(lua))} ms (${fmt((median(lua) * 1000) / size)} µs/entry), wall median ${fmt(median(wall))} ms (${fmt((median(wall) * 1000) / size)} µs/entry)`);
      await redis.del(redisKey); // keep memory flat; the stamp goes with the meta key, so stamp again
      await redisScripts.stampFence(redis, redisKey, writer);
      head = '0-0';
    }
    await sql.end();
  } finally {
    redis.disconnect();
    await env.destroy();
    await redisServer.destroy();
  }
}

const run = { steps, overlap, insert, variants }[mode];
if (!run) {
  console.error('usage: relay-batch-profile.js steps|overlap|insert [--rows N] [--batch N]');
  process.exit(2);
}
run().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
