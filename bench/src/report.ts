/**
 * The results of one run: the JSON document (`latest.json`) and the markdown
 * table printed and written beside it. Targets are shown as met or missed;
 * nothing here fails a build for being slow.
 */
import type { DrainResult, LatencyResult } from './scenarios/end-to-end';
import type { FailoverResult } from './scenarios/failover';
import type { KeepingUpResult } from './scenarios/keeping-up';
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
  latency: LatencyResult[];
  keepingUp: KeepingUpResult | null;
  failover: FailoverResult | null;
  memory: { publisherPeakRssMiB: number | null; consumerPeakRssMiB: number | null } | null;
  ratios: Array<{ peer: string; drainThroughput: number | null; latencyP50: number | null; latencyP99: number | null }>;
  errors: Array<{ scenario: string; message: string }>;
}

const int = (n: number | null | undefined) => (n === null || n === undefined || !Number.isFinite(n) ? '—' : Math.round(n).toLocaleString('en-US'));
const dec = (n: number | null | undefined, digits = 2) => (n === null || n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(digits));
const frac = (ours: number | null | undefined, limit: number | null | undefined) => {
  const r = ratio(ours, limit);
  return r === null ? '—' : `${(r * 100).toFixed(0)} %`;
};
const mark = (met: boolean | null) => (met === null ? '' : met ? ' ✓' : ' ✗');
const verdict = (value: number | null | undefined, ok: (v: number) => boolean) =>
  value === null || value === undefined || !Number.isFinite(value) ? null : ok(value);

/** Peer ratios: throughput ours/peer (>1 = we are faster); latency ours/peer (<1 = we are faster). */
export function peerRatios(drain: DrainResult[], latency: LatencyResult[]): BenchResults['ratios'] {
  const oursDrain = drain.find((d) => d.system === 'petcover');
  const oursLatency = latency.find((l) => l.system === 'petcover');
  const peers = new Set([...drain, ...latency].map((r) => r.system).filter((s) => !s.startsWith('petcover')));
  return [...peers].map((peer) => {
    const d = drain.find((r) => r.system === peer);
    const l = latency.find((r) => r.system === peer);
    return {
      peer,
      drainThroughput: ratio(oursDrain?.eventsPerSec, d?.eventsPerSec),
      latencyP50: ratio(oursLatency?.commitToHandler.p50Ms, l?.commitToHandler.p50Ms),
      latencyP99: ratio(oursLatency?.commitToHandler.p99Ms, l?.commitToHandler.p99Ms),
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
      `| latency at ${int(lat.ratePerSec)} events/s for ${lat.measuredSeconds} s, commit → handler (p50 / p90 / p99 / max, ${int(c.count)} events) | ${dec(c.p50Ms)} / ${dec(c.p90Ms)} / ${dec(c.p99Ms)} / ${dec(c.maxMs)} ms | producer reached ${int(lat.producer.achievedRatePerSec)}/s${lat.producer.dropped > 0 ? `, ${int(lat.producer.dropped)} slots dropped (no free producer connection in time)` : ''} | p50 ≤ 3 ms${mark(verdict(c.p50Ms, (v) => v <= 3))}, p99 ≤ 15 ms${mark(verdict(c.p99Ms, (v) => v <= 15))} |`,
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
  if (r.keepingUp) {
    const k = r.keepingUp;
    const tried = k.steps.map((s) => `${int(s.ratePerSec)}${s.flat ? '' : s.producerLimited ? ` (the producer reached only ${int(s.achievedRatePerSec)}/s)` : ' (fell behind)'}`).join(', ');
    push(
      `| keeping up: highest rate with a flat backlog for ${k.stepSeconds} s (steps: ${tried}) | ${int(k.highestFlatRatePerSec)} events/s | ${frac(k.highestFlatRatePerSec, limits?.singleRowCommitsPerSec)} of single-row commits, ${frac(k.highestFlatRatePerSec, limits?.notifyingCommitsPerSec)} of producer-shaped commits | = the single-row commit limit${mark(verdict(k.highestFlatRatePerSec, (v) => limits !== null && v >= limits.singleRowCommitsPerSec * 0.95))} |`,
    );
    if (k.producerCeilingKeptUpPerSec !== null) {
      push(
        `| keeping up with the producers' own ceiling (the last step was producer-bound and the backlog stayed flat at the rate reached) | ${int(k.producerCeilingKeptUpPerSec)} events/s | ${frac(k.producerCeilingKeptUpPerSec, limits?.notifyingCommitsPerSec)} of producer-shaped commits | |`,
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

  if (r.drain.length > 0 || r.latency.length > 0) {
    push(
      '### Side by side with peers (same producer, same handler work: one row per event/job)',
      '',
      "petcover's handler and pg-boss's (whose work handler receives a batch of jobs) write a batch's rows with one INSERT; graphile-worker runs one task per job (it has no batch form for separately added jobs), so compare it with the per-event row.",
      '',
      '| system | drain events/s | latency p50 / p99 / max (ms) | peak RSS (MiB) | settings |',
      '|---|---:|---:|---:|---|',
    );
    const systems = [...new Set([...r.drain, ...r.latency].map((x) => x.system))];
    for (const name of systems) {
      const d = r.drain.find((x) => x.system === name);
      const l = r.latency.find((x) => x.system === name);
      const rss = d ? Object.values(d.peakRssMiB).map((v) => dec(v, 1)).join(' + ') : '—';
      const settings = d ? Object.entries(d.settings).map(([k, v]) => `${k}=${v}`).join(', ') : '';
      push(
        `| ${name}${d && !d.complete ? ' (drain INCOMPLETE)' : ''} | ${int(d?.eventsPerSec)} | ${dec(l?.commitToHandler.p50Ms)} / ${dec(l?.commitToHandler.p99Ms)} / ${dec(l?.commitToHandler.maxMs)} | ${rss} | ${settings} |`,
      );
    }
    push('');
    if (r.ratios.length > 0) {
      push('| ours / peer | drain throughput (> 1: ours faster) | latency p50 (< 1: ours faster) | latency p99 |', '|---|---:|---:|---:|');
      for (const x of r.ratios) push(`| petcover / ${x.peer} | ${dec(x.drainThroughput)} | ${dec(x.latencyP50)} | ${dec(x.latencyP99)} |`);
      push('');
    }
  }
  if (r.errors.length > 0) {
    push('### Scenarios that did not run to the end', '');
    for (const e of r.errors) push(`- **${e.scenario}**: ${e.message}`);
    push('');
  }
  return lines.join('\n');
}
