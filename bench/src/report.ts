/**
 * The results of one run: the JSON document (`latest.json`) and the markdown
 * table printed and written beside it. Targets are shown as met or missed;
 * nothing here fails a build for being slow.
 */
import type { DrainResult, LatencyResult } from './scenarios/end-to-end';
import type { FailoverResult } from './scenarios/failover';
import type { Goal } from './goals';
import type { EnqueueCpuResult } from './scenarios/enqueue-cpu';
import type { KeepingUpResult } from './scenarios/keeping-up';
import type { LiveResult } from './scenarios/live';
import type { MachineLimits } from './scenarios/machine-limits';
import type { RelayResult } from './scenarios/relay';
import { ratio } from './stats';
import { petcoverSystemName } from './systems/petcover';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  os: string;
  loadAverageAtStart: number[];
}

export interface BenchResults {
  date: string;
  profile: 'full' | 'quick';
  durationSeconds: number;
  machine: MachineInfo;
  versions: Record<string, string>;
  /** Anything a reader must know about the conditions (e.g. other load on the machine). */
  notes: string[];
  limits: MachineLimits | null;
  relay: RelayResult[];
  drain: DrainResult[];
  /** The Node producer through the API's `enqueue` (ours, 1,000/s and an unsaturated rate). */
  latency: LatencyResult[];
  /** Live traffic driven by pgbench (or the Node producer for a dual write), per system and rate. */
  live: LiveResult[];
  /** `enqueue`'s client CPU per call. */
  enqueueCpu: EnqueueCpuResult | null;
  keepingUp: KeepingUpResult | null;
  failover: FailoverResult | null;
  memory: { publisherPeakRssMiB: number | null; consumerPeakRssMiB: number | null } | null;
  /** Ours / peer; latency and CPU from the live runs at the profile's latency rate. */
  ratios: Array<{ peer: string; drainThroughput: number | null; latencyP50: number | null; latencyP99: number | null; cpuPerEvent: number | null }>;
  /** The goals of the live-traffic issue, each a ratio inside this run. */
  goals: Goal[];
  errors: Array<{ scenario: string; message: string }>;
}

export const int = (n: number | null | undefined) => (n === null || n === undefined || !Number.isFinite(n) ? '—' : Math.round(n).toLocaleString('en-US'));
export const dec = (n: number | null | undefined, digits = 2) => (n === null || n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(digits));
const frac = (ours: number | null | undefined, limit: number | null | undefined) => {
  const r = ratio(ours, limit);
  return r === null ? '—' : `${(r * 100).toFixed(0)} %`;
};
const mark = (met: boolean | null) => (met === null ? '' : met ? ' ✓' : ' ✗');
export const verdict = (value: number | null | undefined, ok: (v: number) => boolean) =>
  value === null || value === undefined || !Number.isFinite(value) ? null : ok(value);

/**
 * Peer ratios: throughput ours/peer (>1 = we are faster); latency and CPU per
 * event ours/peer (<1 = ours lower), from the live runs at `rate`.
 */
export function peerRatios(drain: DrainResult[], live: LiveResult[], rate: number): BenchResults['ratios'] {
  const oursDrain = drain.find((d) => d.system === 'petcover');
  const oursLive = live.find((l) => l.system === 'petcover' && l.ratePerSec === rate);
  const peers = new Set([...drain, ...live].map((r) => r.system).filter((s) => !s.startsWith('petcover')));
  return [...peers].map((peer) => {
    const d = drain.find((r) => r.system === peer);
    const l = live.find((r) => r.system === peer && r.ratePerSec === rate);
    return {
      peer,
      drainThroughput: ratio(oursDrain?.eventsPerSec, d?.eventsPerSec),
      latencyP50: ratio(oursLive?.commitToHandler.p50Ms, l?.commitToHandler.p50Ms),
      latencyP99: ratio(oursLive?.commitToHandler.p99Ms, l?.commitToHandler.p99Ms),
      cpuPerEvent: ratio(oursLive?.cpu.totalPerThousandEvents, l?.cpu.totalPerThousandEvents),
    };
  });
}

export function renderMarkdown(r: BenchResults): string {
  const lines: string[] = [];
  const push = (...xs: string[]) => lines.push(...xs);
  push(`## Benchmark (${r.profile}), ${r.date}`, '');
  push(
    `Machine: ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB RAM, ${r.machine.os}; load average at start ${r.machine.loadAverageAtStart.map((x) => x.toFixed(2)).join(' / ')}.`,
  );
  push(`Versions: ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(', ')}. Run took ${dec(r.durationSeconds, 0)} s.`);
  for (const note of r.notes) push('', `> ${note}`);
  push('');

  const limits = r.limits;
  push('### Machine limits (same run)', '', '| limit | figure | how |', '|---|---:|---|');
  if (limits) {
    push(`| batched INSERT into an outbox-shaped table | ${int(limits.batchedInsertRowsPerSec)} rows/s | ${limits.settings.batchedInsert} |`);
    push(`| single-row durable commits, 4 connections | ${int(limits.singleRowCommitsPerSec)} commits/s | ${limits.settings.singleRowCommit} |`);
    push(`| producer-shaped transactions (2 rows + pg_notify), 4 connections | ${int(limits.notifyingCommitsPerSec)} commits/s | ${limits.settings.notifyingCommit} |`);
    push(`| XADD, unpipelined | ${int(limits.xaddPerSec)} /s | ${limits.settings.xadd} |`);
    push(`| XADD, pipelined (-P 64) | ${int(limits.xaddPipelinedPerSec)} /s | |`);
  } else push('| (not measured) | | |');
  push('');

  push('### PetCover', '', '| scenario | figure | share of the machine limit | target |', '|---|---:|---|---|');
  for (const relay of r.relay) {
    push(
      `| relay, ${relay.streams} stream${relay.streams > 1 ? 's' : ''}, ${int(relay.events)} pre-filled events${relay.complete ? '' : ` (INCOMPLETE: ${int(relay.published)} published, ${int(relay.inRedis)} in Redis)`} | ${int(relay.eventsPerSec)} events/s (${dec(relay.seconds)} s) | ${frac(relay.eventsPerSec, limits?.batchedInsertRowsPerSec)} of batched INSERT, ${frac(relay.eventsPerSec, limits?.xaddPipelinedPerSec)} of pipelined XADD | ≥ 60,000${mark(verdict(relay.eventsPerSec, (v) => v >= 60_000))} |`,
    );
  }
  const ours = r.drain.find((d) => d.system === 'petcover');
  if (ours) {
    push(
      `| end-to-end drain, ${int(ours.events)} pre-filled events, one row written per event${ours.complete ? '' : ` (INCOMPLETE: ${int(ours.handled)} handled)`}${ours.duplicates ? ` (${ours.duplicates} DUPLICATES)` : ''} | ${int(ours.eventsPerSec)} events/s (${dec(ours.seconds)} s) | ${frac(ours.eventsPerSec, limits?.batchedInsertRowsPerSec)} of batched INSERT (the handler writes a run of events with one INSERT) | ≥ 20,000${mark(verdict(ours.eventsPerSec, (v) => v >= 20_000))} |`,
    );
  }
  const perEvent = r.drain.find((d) => d.system === petcoverSystemName('per-event'));
  if (perEvent) {
    push(
      `| same, with a per-event handler (one INSERT per event instead of one per run of events)${perEvent.complete ? '' : ` (INCOMPLETE: ${int(perEvent.handled)} handled)`}${perEvent.duplicates ? ` (${perEvent.duplicates} DUPLICATES)` : ''} | ${int(perEvent.eventsPerSec)} events/s (${dec(perEvent.seconds)} s) | ${frac(perEvent.eventsPerSec, limits?.singleRowCommitsPerSec)} of single-row commits | |`,
    );
  }
  const lat = r.latency.find((l) => l.system === 'petcover');
  if (lat) {
    const c = lat.commitToHandler;
    push(
      `| through the API's \`enqueue\` (the Node producer): latency at ${int(lat.ratePerSec)} events/s for ${lat.measuredSeconds} s, commit → handler (p50 / p90 / p99 / max, ${int(c.count)} events) | ${dec(c.p50Ms)} / ${dec(c.p90Ms)} / ${dec(c.p99Ms)} / ${dec(c.maxMs)} ms | producer reached ${int(lat.producer.achievedRatePerSec)}/s${lat.producer.dropped > 0 ? `, ${int(lat.producer.dropped)} slots dropped (no free producer connection in time)` : ''}; producer client CPU ${dec(lat.producerClientCpuMsPerTransaction, 3)} ms per transaction | p50 ≤ 3 ms${mark(verdict(c.p50Ms, (v) => v <= 3))}, p99 ≤ 15 ms${mark(verdict(c.p99Ms, (v) => v <= 15))} |`,
    );
    const s = lat.scheduleToHandler;
    push(`| same, from the schedule slot (includes waiting for a producer connection) | ${dec(s.p50Ms)} / ${dec(s.p90Ms)} / ${dec(s.p99Ms)} / ${dec(s.maxMs)} ms | | |`);
  }
  const unsaturated = r.latency.find((l) => l.system === 'petcover' && lat && l.ratePerSec < lat.ratePerSec);
  if (unsaturated) {
    const c = unsaturated.commitToHandler;
    push(
      `| same at ${int(unsaturated.ratePerSec)} events/s (the machine not saturated: the pipeline's own latency, ${int(c.count)} events) | ${dec(c.p50Ms)} / ${dec(c.p90Ms)} / ${dec(c.p99Ms)} / ${dec(c.maxMs)} ms | producer reached ${int(unsaturated.producer.achievedRatePerSec)}/s | |`,
    );
  }
  if (r.enqueueCpu) {
    push(
      `| \`enqueue\`'s client CPU per call (${int(r.enqueueCpu.calls)} sequential calls in one transaction, postgres.js encoding and parsing included) | ${dec(r.enqueueCpu.cpuMsPerCall, 3)} ms CPU (${dec(r.enqueueCpu.wallMsPerCall, 3)} ms wall) per call | | |`,
    );
  }
  if (r.keepingUp) {
    const k = r.keepingUp;
    const tried = k.steps
      .map((s) => `${int(s.ratePerSec)}${s.producerCommit === 'async' ? ' async' : ''}${s.flat ? '' : s.producerLimited ? ` (the producer reached only ${int(s.achievedRatePerSec)}/s)` : ' (fell behind)'}`)
      .join(', ');
    push(
      `| keeping up (pgbench -R producer): highest rate with a flat backlog for ${k.stepSeconds} s (steps: ${tried}) | ${int(k.highestFlatRatePerSec)} events/s | ${frac(k.highestFlatRatePerSec, limits?.singleRowCommitsPerSec)} of single-row commits, ${frac(k.highestFlatRatePerSec, limits?.notifyingCommitsPerSec)} of producer-shaped commits | ≥ 50 % of the single-row commit limit${mark(verdict(k.highestFlatRatePerSec, (v) => limits !== null && v >= limits.singleRowCommitsPerSec * 0.5))} |`,
    );
    if (k.producerCeilingKeptUpPerSec !== null) {
      push(
        `| keeping up with the producers' own ceiling (the last durable step was producer-bound and the backlog stayed flat at the rate reached) | ${int(k.producerCeilingKeptUpPerSec)} events/s | ${frac(k.producerCeilingKeptUpPerSec, limits?.notifyingCommitsPerSec)} of producer-shaped commits | |`,
      );
    }
    if (k.steps.some((s) => s.producerCommit === 'async')) {
      push(
        `| keeping up where the producer is not the ceiling (steps marked async: the producer's sessions at synchronous_commit = off, so its commits do not wait for the WAL flush; the pipeline's own commits stay durable) | ${int(k.pipelineHighestFlatRatePerSec)} events/s | ${frac(k.pipelineHighestFlatRatePerSec, limits?.singleRowCommitsPerSec)} of single-row commits | ≥ 50 % of the single-row commit limit${mark(verdict(k.pipelineHighestFlatRatePerSec, (v) => limits !== null && v >= limits.singleRowCommitsPerSec * 0.5))} |`,
      );
    }
  }
  for (const f of r.failover?.cases ?? []) {
    const limit = f.signal === 'SIGKILL' ? f.leaseTtlSeconds + 1 : 1;
    push(
      `| failover after ${f.signal} of the lease holder (second publisher running, lease TTL ${f.leaseTtlSeconds} s) | ${dec(f.secondsUntilFlowing)} s until rows are published again (lease taken over after ${dec(f.secondsUntilTakeover)} s) | exit: ${f.exit} | ≤ ${limit} s${mark(verdict(f.secondsUntilFlowing, (v) => v <= limit))} |`,
    );
  }
  if (r.memory) {
    push(
      `| peak RSS during the drain: publisher / consumer | ${dec(r.memory.publisherPeakRssMiB, 1)} / ${dec(r.memory.consumerPeakRssMiB, 1)} MiB | | ≤ 150 MiB${mark(verdict(Math.max(r.memory.publisherPeakRssMiB ?? NaN, r.memory.consumerPeakRssMiB ?? NaN), (v) => v <= 150))} |`,
    );
  }
  push('');

  if (r.live.length > 0) {
    push(
      '### Live traffic: one event per producer transaction, open loop',
      '',
      "The producer is pgbench (`-R`, 4 connections) running each system's own producer transaction: one domain row and the event/job, committed together. " +
        "BullMQ's Redis backend cannot join that transaction: the Node producer commits the domain row, then adds the job (a dual write: a crash in between loses the job). " +
        'Latency = handler row − domain row, both `clock_timestamp()` on the database server (the domain row is the last statement before COMMIT). ' +
        'CPU = seconds of CPU per 1,000 events from /proc, after the warm-up until every event was handled: the system\'s processes, the Postgres backends of the run\'s database (producer sessions included: the event\'s insert is part of the cost), and redis-server for systems that use Redis (Redis is shared with anything else on the machine). ' +
        "The producer's own client CPU is shown apart, not summed.",
      '',
      '| system | offered /s | reached | commit → handler p50 / p99 / max (ms) | CPU s / 1,000 events (sum) | by process | producer client CPU s / 1,000 | delivery |',
      '|---|---:|---:|---:|---:|---|---:|---|',
    );
    for (const l of r.live) {
      const c = l.commitToHandler;
      const byProcess = Object.entries(l.cpu.perThousandEvents)
        .sort(([, a], [, b]) => b - a)
        .map(([label, v]) => `${label} ${dec(v, 3)}`)
        .join('; ');
      push(
        `| ${l.system}${l.complete ? '' : ` (INCOMPLETE: ${int(l.handled)} of ${int(l.committed)} handled)`} | ${int(l.ratePerSec)} | ${frac(l.reachedShare, 1)}${l.skipped > 0 ? ` (${int(l.skipped)} skipped)` : ''} | ${dec(c.p50Ms)} / ${dec(c.p99Ms)} / ${dec(c.maxMs)} | ${dec(l.cpu.totalPerThousandEvents, 3)} | ${byProcess} | ${dec(l.cpu.producerClientPerThousandEvents, 3)} (${l.producer}) | ${l.delivery} |`,
      );
    }
    const staged = r.live.filter((l) => l.stages);
    if (staged.length > 0) {
      push('', 'Where the time goes (systems that leave a timestamp on the way; ms, p50 / p99):', '', '| system | offered /s | ' + Object.keys(staged[0]!.stages!).join(' | ') + ' |', '|---|---:|' + Object.keys(staged[0]!.stages!).map(() => '---:').join('|') + '|');
      for (const l of staged) push(`| ${l.system} | ${int(l.ratePerSec)} | ${Object.values(l.stages!).map((s) => `${dec(s.p50Ms)} / ${dec(s.p99Ms)}`).join(' | ')} |`);
    }
    push('');
  }

  if (r.drain.length > 0) {
    push(
      '### Drain side by side with peers (same handler work: one row per event/job)',
      '',
      "petcover's handler and pg-boss's (whose work handler receives a batch of jobs) write a batch's rows with one INSERT; graphile-worker and BullMQ run one handler call per job (neither has a batch form for separately added jobs), so compare them with the per-event row.",
      '',
      '| system | drain events/s | peak RSS (MiB) | settings |',
      '|---|---:|---:|---|',
    );
    for (const d of r.drain) {
      const rss = Object.values(d.peakRssMiB).map((v) => dec(v, 1)).join(' + ');
      const settings = Object.entries(d.settings).map(([k, v]) => `${k}=${v}`).join(', ');
      push(`| ${d.system}${d.complete ? '' : ' (drain INCOMPLETE)'}${d.duplicates ? ` (${d.duplicates} DUPLICATES)` : ''} | ${int(d.eventsPerSec)} | ${rss} | ${settings} |`);
    }
    push('');
  }
  if (r.ratios.length > 0) {
    push(
      '| ours / peer | drain throughput (> 1: ours faster) | live p50 (< 1: ours faster) | live p99 | CPU per event (< 1: ours cheaper) |',
      '|---|---:|---:|---:|---:|',
    );
    for (const x of r.ratios) push(`| petcover / ${x.peer} | ${dec(x.drainThroughput)} | ${dec(x.latencyP50)} | ${dec(x.latencyP99)} | ${dec(x.cpuPerEvent)} |`);
    push('');
  }
  if (r.goals.length > 0) {
    push('### Goals (ratios inside this run)', '', '| goal | figure | met? |', '|---|---|---|');
    for (const g of r.goals) push(`| ${g.goal} | ${g.figure} | ${g.met === null ? 'not measured' : g.met ? '✓' : '✗'} |`);
    push('');
  }
  if (r.errors.length > 0) {
    push('### Scenarios that did not run to the end', '');
    for (const e of r.errors) push(`- **${e.scenario}**: ${e.message}`);
    push('');
  }
  return lines.join('\n');
}
