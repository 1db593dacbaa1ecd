/* eslint-disable */
// Stress for docs/notes/2026-11-30/pg-stranded.md: many concurrent calls on a small postgres.js pool across
// `pg_ctl stop -m fast` + start of its own initdb cluster (needs root: runs the server as postgres). From the repo root:
//   CYCLES=25 MAX=3 KINDS=txwork,plain,unnamed,tx,reserve node docs/notes/2026-11-30/pg-stranded-stress.cjs
// PGJS=<path to a postgres.js cjs/src/index.js> compares builds. Reports calls not settled SETTLE_MS after the
// server is back, whether they settled later, and calls answered with another call's rows.
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs'); const os = require('node:os'); const path = require('node:path'); const net = require('node:net');
const postgres = require(process.env.PGJS || require.resolve('postgres', { paths: [require('node:path').join(process.cwd(), 'packages/outbox')] }));
const CYCLES = Number(process.env.CYCLES || 10);
const MAX = Number(process.env.MAX || 3);
const WORKERS = Number(process.env.WORKERS || 30);
const SETTLE_MS = Number(process.env.SETTLE_MS || 15000);
const KINDS = (process.env.KINDS || 'tx,plain,reserve,savepoint,prepared,unnamed,txpipe').split(',');
const bin = '/usr/lib/postgresql/15/bin';
const run = (cmd, args) => new Promise((res, rej) => { const c = spawn('runuser', ['-u', 'postgres', '--', path.join(bin, cmd), ...args], { stdio: 'ignore' }); c.on('exit', (code) => code === 0 ? res() : rej(new Error(cmd + ' ' + code))); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function freePort() { return new Promise((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); }); }

(async () => {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstrand-'));
  execFileSync('chown', ['-R', 'postgres', dir]);
  const data = path.join(dir, 'data');
  execFileSync('runuser', ['-u', 'postgres', '--', path.join(bin, 'initdb'), '-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8'], { stdio: 'ignore' });
  const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off -c max_connections=200`;
  const start = () => run('pg_ctl', ['-D', data, '-o', opts, '-l', path.join(dir, 'log'), '-w', 'start']);
  const stop = () => run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
  await start();
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  const setup = postgres(url, { max: 1, onnotice: () => {} });
  await setup`CREATE TABLE IF NOT EXISTS t (id int primary key, v bigint not null default 0)`;
  await setup`INSERT INTO t SELECT g, 0 FROM generate_series(1, 50) g ON CONFLICT DO NOTHING`;
  await setup.end();
  const sql = postgres(url, { max: MAX, connect_timeout: 5, onnotice: () => {}, connection: { application_name: 'strand' } });

  const pending = new Map(); let seq = 0; let settled = 0; let failed = 0;
  const stuck = new Map(); const late = [];
  const done = (id) => { pending.delete(id); settled++; const s = stuck.get(id); if (s) { stuck.delete(id); late.push(s.kind + ':' + (Date.now() - s.at) + 'ms'); } };
  const track = (kind, p) => { const id = ++seq; pending.set(id, { kind, at: Date.now() }); return Promise.resolve(p).then((v) => { done(id); return v; }, (e) => { done(id); failed++; throw e; }); };
  let stopping = false; let wrong = 0; const wrongEx = [];
  const expect1 = (rows, key, want) => { const got = rows && rows[0] && rows[0][key]; if (String(got) !== String(want)) { wrong++; if (wrongEx.length < 5) wrongEx.push(JSON.stringify(rows).slice(0, 80) + ' want ' + key + '=' + want); } return rows; };
  const ops = {
    tx: (i) => sql.begin(async (tx) => { expect1(await tx`select ${i}::int as i`, 'i', i); await tx`update t set v = v + 1 where id = ${1 + (i % 50)}`; await tx`select pg_sleep(0.002)`; }),
    txpipe: (i) => sql.begin((tx) => [tx`update t set v = v + 1 where id = ${1 + (i % 50)}`, tx.unsafe('select $1::int', [i], { prepare: true }), tx`select ${i}::int`]),
    txwork: (i) => sql.begin(async (tx) => { expect1(await tx`select ${i}::int as i`, 'i', i); await sleep(Math.random() * 20); await tx`update t set v = v + 1 where id = ${1 + (i % 50)}`; await sleep(Math.random() * 5); expect1(await tx.unsafe('select $1::int as j', [i], { prepare: true }), 'j', i); }),
    plain: async (i) => expect1(await sql`select ${i}::int as i, pg_sleep(0.003)`, 'i', i),
    prepared: (i) => sql.unsafe('select $1::int + 1 as n', [i], { prepare: true }).execute(),
    unnamed: async (i) => expect1(await sql.unsafe('select $1::text as s', [String(i)]), 's', i),
    reserve: async (i) => { const r = await track('reserve-acquire', sql.reserve()); try { await r`select ${i}::int`; } finally { r.release(); } },
    savepoint: (i) => sql.begin(async (tx) => { await tx`select 1`; await tx.savepoint(async (sp) => { await sp`update t set v = v + 1 where id = ${1 + (i % 50)}`; }).catch(() => {}); await tx`select 2`; }),
  };
  const workers = [];
  for (let w = 0; w < WORKERS; w++) {
    const kind = KINDS[w % KINDS.length];
    workers.push((async () => { let i = w * 1e6; while (!stopping) { i++; try { await track(kind, ops[kind](i)); } catch { await sleep(5 + Math.random() * 40); } } })());
  }
  let stranded = 0;
  for (let c = 1; c <= CYCLES; c++) {
    await sleep(300 + Math.random() * 1200);
    const before = settled;
    await stop();
    const down = Math.random() < 0.3 ? 0 : Math.random() * 1500;
    await sleep(down);
    await start();
    const upAt = Date.now();
    // every call started before upAt must settle within SETTLE_MS
    while (Date.now() - upAt < SETTLE_MS) {
      const old = [...pending.values()].filter((p) => p.at < upAt);
      if (old.length === 0) break;
      await sleep(100);
    }
    const old = [...pending.entries()].filter(([, p]) => p.at < upAt);
    if (old.length && sql.__state) console.log(JSON.stringify(sql.__state()));
    console.log(`cycle ${c}: down ${Math.round(down)} ms, settled since ${settled - before}, failed total ${failed}, stuck ${old.length} ${JSON.stringify(old.map(([id, p]) => p.kind))}`);
    if (old.length) { stranded++; if (process.env.STOP_ON_STRAND) break; for (const [id, p] of old) { pending.delete(id); stuck.set(id, p); } }
  }
  const endAt = Date.now(); while (stuck.size && Date.now() - endAt < 40000) await sleep(200);
  console.log(`LATE settled (after being reported stuck): ${JSON.stringify(late)}; NEVER within +40 s: ${JSON.stringify([...stuck.values()].map((p) => p.kind))}`);
  stopping = true;
  console.log(`WRONG results: ${wrong} ${JSON.stringify(wrongEx)}`);
  console.log(`RESULT cycles=${CYCLES} strandedCycles=${stranded} calls=${seq}`);
  await Promise.race([sql.end({ timeout: 1 }), sleep(3000)]);
  await stop().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
