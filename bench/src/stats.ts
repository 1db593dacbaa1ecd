/**
 * The arithmetic of the benchmark: latency histograms (HDR, microsecond
 * resolution), rates and the backlog trend used by the keeping-up scenario.
 */
import * as hdr from 'hdr-histogram-js';

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

/** Highest latency the histogram records exactly: 10 minutes, in microseconds. */
const HIGHEST_TRACKABLE_MICROS = 600_000_000;

/**
 * Summarises latencies given in milliseconds through an HDR histogram with 3
 * significant digits (so a 2.345 ms and a 2.346 ms sample stay apart).
 * Negative samples (clock noise below a microsecond) count as zero; samples
 * above ten minutes are clamped. An empty input gives count 0 and NaN figures.
 */
export function summariseLatencies(latenciesMs: Iterable<number>): LatencySummary {
  const histogram = hdr.build({
    bitBucketSize: 'packed',
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_TRACKABLE_MICROS,
    numberOfSignificantValueDigits: 3,
    autoResize: false,
    useWebAssembly: false,
  });
  let count = 0;
  for (const ms of latenciesMs) {
    const micros = Math.min(HIGHEST_TRACKABLE_MICROS, Math.max(0, Math.round(ms * 1000)));
    histogram.recordValue(micros);
    count += 1;
  }
  if (count === 0) return { count: 0, p50Ms: NaN, p90Ms: NaN, p99Ms: NaN, maxMs: NaN, meanMs: NaN };
  // A percentile reads the top of its HDR bucket, which can lie a hair above
  // the largest sample; no percentile is reported above the max.
  const at = (p: number) => Math.min(histogram.getValueAtPercentile(p), histogram.maxValue) / 1000;
  const summary = {
    count,
    p50Ms: at(50),
    p90Ms: at(90),
    p99Ms: at(99),
    maxMs: histogram.maxValue / 1000,
    meanMs: histogram.mean / 1000,
  };
  histogram.destroy();
  return summary;
}

/** Events per second; 0 when no time passed (never Infinity in a report). */
export function ratePerSecond(events: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (events * 1000) / elapsedMs : 0;
}

export interface Sample {
  /** Milliseconds since the start of the window. */
  atMs: number;
  value: number;
}

/**
 * Least-squares slope of `value` over time, in units per second. Needs two
 * samples at distinct times; otherwise 0 (no evidence of a trend).
 */
export function slopePerSecond(samples: readonly Sample[]): number {
  if (samples.length < 2) return 0;
  const n = samples.length;
  const meanT = samples.reduce((s, x) => s + x.atMs, 0) / n;
  const meanV = samples.reduce((s, x) => s + x.value, 0) / n;
  let num = 0;
  let den = 0;
  for (const { atMs, value } of samples) {
    num += (atMs - meanT) * (value - meanV);
    den += (atMs - meanT) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 1000;
}

/**
 * Whether a backlog sampled during a step at `ratePerSec` stayed flat: its
 * trend grows by less than `tolerance` (default 2%) of the offered rate. A
 * system that falls behind by 2% accumulates a backlog that never drains.
 */
export function backlogStaysFlat(samples: readonly Sample[], ratePerSec: number, tolerance = 0.02): boolean {
  return slopePerSecond(samples) < ratePerSec * tolerance;
}

/** `ours / theirs`, or null when either side is missing or zero. */
export function ratio(ours: number | null | undefined, theirs: number | null | undefined): number | null {
  if (ours === null || ours === undefined || theirs === null || theirs === undefined) return null;
  if (!Number.isFinite(ours) || !Number.isFinite(theirs) || theirs === 0) return null;
  return ours / theirs;
}
