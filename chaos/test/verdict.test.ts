/**
 * The chaos verdict on short runs of the Redis faults issue 12 added (real
 * publishers and consumers, dedicated Redis and Postgres): a restore from an
 * older snapshot and a WRONGTYPE key planted on one stream are survived with
 * nothing lost, doubled or reordered; and the check can fail — a planted
 * partial loss with Postgres's record of Redis erased (so no publisher can
 * know) is reported as lost events and a FAIL.
 *
 * Needs the apps built (turbo's test task builds the dependencies first).
 */
import { runChaos, DEFAULT_CHAOS_OPTIONS, type ChaosOptions, type ChaosSummary } from '../src/run';
import { formatChaosSummary } from '../src/summary';

/** A 20 s run with only `faultKinds`; its log and summary are printed for the reader of a failure. */
async function shortRun(overrides: Partial<ChaosOptions>): Promise<ChaosSummary> {
  const lines: string[] = [];
  const summary = await runChaos({ ...DEFAULT_CHAOS_OPTIONS, durationSec: 20, seed: 12, drainTimeoutSec: 60, log: (line) => lines.push(line), ...overrides });
  process.stdout.write(`${lines.join('\n')}\n${formatChaosSummary(summary, DEFAULT_CHAOS_OPTIONS.replicas)}\n`);
  return summary;
}

// Set-up (initdb, four app processes) + 20 s of traffic + drain, on a loaded machine.
jest.setTimeout(300_000);

test('older snapshot restore and a WRONGTYPE plant: lost = doubled = out-of-order = 0, the other streams flowed during the plant', async () => {
  const summary = await shortRun({ faultKinds: ['redis-snapshot-restore', 'wrongtype-key'] });
  expect(summary.faults).toMatchObject({ 'Redis restart from an older snapshot': 1, 'WRONGTYPE key planted on one stream': 1 });
  expect(summary).toMatchObject({ lost: 0, doubled: 0, outOfOrder: 0, drained: true, unexpectedExits: {}, passed: true });
  expect(summary.wrongTypePlants).toHaveLength(1);
  const [plant] = summary.wrongTypePlants;
  if (!plant!.overlapped) expect(plant!.otherStreamsHandled).toBeGreaterThan(0);
  // The restore really lost Redis's tail, and the publisher re-sent it.
  expect(summary.redisRecoveries.republishedRows).toBeGreaterThan(0);
});

test('a planted partial loss with the record erased (recovery impossible): verify reports the events lost and the run FAILS', async () => {
  const summary = await shortRun({ faultKinds: ['planted-loss'], drainTimeoutSec: 20, failureExpected: true });
  expect(summary.faults).toMatchObject({ 'PLANTED LOSS (record erased, recovery impossible)': 1 });
  expect(summary.passed).toBe(false);
  expect(summary.drained).toBe(false);
  expect(summary.lost).toBeGreaterThan(0);
  // Lost from Redis, not stuck in the outbox; nothing else went wrong.
  expect(summary.verify.unpublished).toBe(0);
  expect(summary).toMatchObject({ doubled: 0, outOfOrder: 0, unexpectedDeadLetters: 0, unexpectedExits: {} });
});
