import { backlogStaysFlat, ratePerSecond, ratio, slopePerSecond, summariseLatencies } from '../src/stats';

describe('summariseLatencies', () => {
  it('reads percentiles of 1..1000 ms within the histogram precision', () => {
    const values = Array.from({ length: 1000 }, (_, i) => i + 1);
    const s = summariseLatencies(values);
    expect(s.count).toBe(1000);
    expect(s.p50Ms).toBeCloseTo(500, 0);
    expect(s.p90Ms).toBeCloseTo(900, 0);
    expect(s.p99Ms).toBeCloseTo(990, 0);
    expect(s.maxMs).toBeCloseTo(1000, 0);
    expect(s.meanMs).toBeCloseTo(500.5, 0);
  });

  it('keeps sub-millisecond resolution and clamps negative clock noise to zero', () => {
    const s = summariseLatencies([-0.002, 0.25, 0.25, 0.25, 1.5]);
    expect(s.count).toBe(5);
    expect(s.p50Ms).toBeCloseTo(0.25, 3);
    expect(s.maxMs).toBeCloseTo(1.5, 2);
  });

  it('reports NaN figures for no samples rather than zeros that look like a result', () => {
    const s = summariseLatencies([]);
    expect(s.count).toBe(0);
    expect(Number.isNaN(s.p99Ms)).toBe(true);
  });
});

describe('rates and trends', () => {
  it('computes events per second and refuses a zero-length window', () => {
    expect(ratePerSecond(5000, 2500)).toBe(2000);
    expect(ratePerSecond(10, 0)).toBe(0);
  });

  it('fits the slope of a growing backlog in units per second', () => {
    const growing = Array.from({ length: 21 }, (_, i) => ({ atMs: i * 500, value: 100 + i * 50 }));
    expect(slopePerSecond(growing)).toBeCloseTo(100, 6);
    expect(backlogStaysFlat(growing, 1000)).toBe(false);
  });

  it('calls a noisy but level backlog flat', () => {
    const level = Array.from({ length: 40 }, (_, i) => ({ atMs: i * 500, value: 200 + (i % 2 === 0 ? 30 : -30) }));
    expect(Math.abs(slopePerSecond(level))).toBeLessThan(5);
    expect(backlogStaysFlat(level, 1000)).toBe(true);
    expect(slopePerSecond([{ atMs: 0, value: 3 }])).toBe(0);
  });

  it('gives ratios only when both sides are real numbers', () => {
    expect(ratio(300, 100)).toBe(3);
    expect(ratio(300, 0)).toBeNull();
    expect(ratio(null, 100)).toBeNull();
    expect(ratio(NaN, 100)).toBeNull();
  });
});

describe('percentiles never exceed the largest sample', () => {
  it('clamps a bucket top above the max', () => {
    const s = summariseLatencies([34.08, 51.39, 89.62]);
    expect(s.p99Ms).toBeLessThanOrEqual(s.maxMs);
    expect(s.maxMs).toBeCloseTo(89.62, 1);
  });
});
