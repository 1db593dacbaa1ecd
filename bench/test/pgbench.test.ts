import { parsePgbenchOutput, pgbenchVariablesUsed, runPgbench } from '../src/pgbench';
import { inlineParameters } from '../src/producer-scripts/captured-statement';

const OPEN_LOOP_OUTPUT = `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/x.sql
scaling factor: 1
query mode: prepared
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 1890
number of failed transactions: 0 (0.000%)
number of transactions skipped: 110 (5.500%)
number of transactions above the 2000.0 ms latency limit: 0/1890 (0.000%)
latency average = 1.472 ms
latency stddev = 2.597 ms
rate limit schedule lag: avg 0.544 (max 5.911) ms
initial connection time = 14.454 ms
tps = 945.311810 (without initial connection time)
`;

describe('pgbench output', () => {
  it('reads processed, skipped, tps and the schedule lag of an open-loop run', () => {
    expect(parsePgbenchOutput(OPEN_LOOP_OUTPUT)).toEqual({
      processed: 1890,
      failed: 0,
      skipped: 110,
      tps: 945.31181,
      scheduleLagAvgMs: 0.544,
      scheduleLagMaxMs: 5.911,
      latencyAvgMs: 1.472,
    });
  });

  it('refuses output without a tps line rather than reporting zero', () => {
    expect(() => parsePgbenchOutput('pgbench: error: connection to server failed\n')).toThrow('pgbench printed no tps');
  });
});

describe('pgbench variables', () => {
  it('finds :name variables but not :: casts', () => {
    expect(pgbenchVariablesUsed("SELECT :p2::jsonb, 'x'::text, :seq")).toEqual(['p2', 'seq']);
  });

  it('refuses to start a script whose variables are not defined, naming them', async () => {
    await expect(runPgbench({ databaseUrl: 'postgres://127.0.0.1/none', script: "SELECT 'stream:bench:x';\n", clients: 1, transactions: 1 })).rejects.toThrow(
      'pgbench script uses undefined variable(s) bench',
    );
  });
});

describe('a captured statement as pgbench script text', () => {
  it('binds strings as variables, writes numbers, booleans and NULL, and puts the caller\'s SQL in place', () => {
    const statement = inlineParameters(
      { text: 'INSERT INTO t VALUES ($1::uuid, $2, $3, $4, $5, $10)', values: ['mark', 'stream:bench:a', 7, null, true, { a: 1 }, 0, 0, 0, "it's"] },
      (value) => (value === 'mark' ? 'gen_random_uuid()' : undefined),
      'p',
    );
    expect(statement.sql).toBe('INSERT INTO t VALUES ((gen_random_uuid())::uuid, :p2, 7, NULL, true, :p10);');
    expect(statement.variables).toEqual({ p2: 'stream:bench:a', p10: "it's" });
  });

  it('names a placeholder that has no bound value', () => {
    expect(() => inlineParameters({ text: 'SELECT $2', values: ['a'] }, () => undefined, 'p')).toThrow('statement uses $2 but binds 1 values');
  });
});
