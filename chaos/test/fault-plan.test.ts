import { FAULT_KINDS, planFaults } from '../src/fault-plan';
import { parseChaosArgs } from '../src/options';
import { chaosPayloadSchema } from '../src/chaos-streams';
import { createChaosModule, failsFirstAttempt } from '../src/handler-module';
import { createHandlerRegistry } from '@petcover/outbox';

const base = { durationMs: 60_000, replicas: 2, leaseTtlMs: 3_000 };

describe('fault plan', () => {
  test('one seed gives one schedule; another seed another', () => {
    expect(planFaults({ ...base, seed: 7 })).toEqual(planFaults({ ...base, seed: 7 }));
    expect(planFaults({ ...base, seed: 7 })).not.toEqual(planFaults({ ...base, seed: 8 }));
  });

  test.each([1, 2, 3, 42, 1234567])('seed %i: every kind at least once, inside the run, zombies past the lease TTL', (seed) => {
    const plan = planFaults({ ...base, seed });
    expect(new Set(plan.map((f) => f.kind))).toEqual(new Set(FAULT_KINDS));
    for (const role of ['publisher', 'consumer']) {
      expect(plan.some((f) => f.kind === 'sigkill' && f.role === role)).toBe(true);
      expect(plan.some((f) => f.kind === 'zombie' && f.role === role)).toBe(true);
    }
    for (const fault of plan) {
      expect(fault.atMs).toBeGreaterThanOrEqual(4_000);
      expect(fault.atMs).toBeLessThanOrEqual(56_000);
      if (fault.kind === 'zombie') expect(fault.stoppedMs).toBeGreaterThan(base.leaseTtlMs);
    }
  });

  test.each([1, 42])('seed %i on a Redis Cluster: a master kill takes the place of a Redis restart, a master freeze that of a snapshot restore', (seed) => {
    const plan = planFaults({ ...base, seed, redis: 'cluster', partitionStreams: 6 });
    const kinds = new Set(plan.map((f) => f.kind));
    expect(kinds.has('redis-master-kill')).toBe(true);
    expect(kinds.has('redis-master-freeze')).toBe(true);
    expect(kinds.has('redis-restart')).toBe(false);
    expect(kinds.has('redis-snapshot-restore')).toBe(false);
    expect(kinds.has('wrongtype-key')).toBe(true);
    expect(kinds.size).toBe(FAULT_KINDS.length);
  });

  test('WRONGTYPE plants pick one of the partition streams and hold long enough to see the others flow', () => {
    const plants = planFaults({ ...base, seed: 5, durationMs: 600_000, partitionStreams: 6, kinds: ['wrongtype-key'] });
    expect(plants.length).toBeGreaterThan(50);
    for (const fault of plants) {
      if (fault.kind !== 'wrongtype-key') throw new Error(`unexpected ${fault.kind}`);
      expect(fault.partition).toBeGreaterThanOrEqual(0);
      expect(fault.partition).toBeLessThan(6);
      expect(fault.heldMs).toBeGreaterThanOrEqual(5_000);
    }
    expect(new Set(plants.map((f) => (f.kind === 'wrongtype-key' ? f.partition : -1))).size).toBe(6);
  });

  test('kinds narrows a run: the planted loss only when asked for, never in a default plan', () => {
    expect(planFaults({ ...base, seed: 3, kinds: ['planted-loss'] })).toEqual([expect.objectContaining({ kind: 'planted-loss', trafficMs: expect.any(Number) })]);
    for (const seed of [1, 2, 3]) expect(planFaults({ ...base, seed, durationMs: 600_000 }).some((f) => f.kind === 'planted-loss')).toBe(false);
  });

  test('longer runs get more faults', () => {
    expect(planFaults({ ...base, seed: 1, durationMs: 600_000 }).length).toBeGreaterThan(planFaults({ ...base, seed: 1 }).length + 50);
  });
});

describe('chaos handler module', () => {
  test('registers one handler per chaos stream type; a poison payload fails its schema', () => {
    const registry = createHandlerRegistry();
    const module = createChaosModule({ seed: 1, failFraction: 0.05 });
    module.register(registry);
    expect(registry.eventTypes().sort()).toEqual(['AuditRecorded', 'OrderChanged', 'PaymentCaptured']);
    expect(module.streams).toContainEqual({ name: 'stream:chaos:orders', partitions: 4 });
    expect(chaosPayloadSchema.safeParse({ seq: 'poison', key: 'orders-1' }).success).toBe(false);
    expect(chaosPayloadSchema.safeParse({ seq: 3, key: 'orders-1' }).success).toBe(true);
  });

  test('fails the first attempt of a seeded, stable fraction of events', () => {
    const ids = Array.from({ length: 4000 }, (_, i) => `0190b7c2-5f3a-7d21-8c4e-${String(i).padStart(12, '0')}`);
    const failing = ids.filter((id) => failsFirstAttempt(id, { seed: 9, failFraction: 0.05 }));
    expect(failing.length).toBeGreaterThan(120);
    expect(failing.length).toBeLessThan(280);
    expect(ids.filter((id) => failsFirstAttempt(id, { seed: 9, failFraction: 0.05 }))).toEqual(failing);
    expect(ids.some((id) => failsFirstAttempt(id, { seed: 9, failFraction: 0 }))).toBe(false);
  });
});

describe('pnpm chaos arguments', () => {
  test('--duration and --seed pass through; bad values are refused precisely', () => {
    expect(parseChaosArgs(['--duration', '60', '--seed', '42'])).toMatchObject({ durationSec: 60, seed: 42 });
    expect(() => parseChaosArgs(['--duration', 'soon'])).toThrow('--duration must be a number of seconds between 20 and 86400 (got "soon")');
    expect(() => parseChaosArgs(['--seed'])).toThrow('--seed needs a value');
    expect(() => parseChaosArgs(['--wat', '1'])).toThrow('unknown argument "--wat"');
    expect(parseChaosArgs([]).redis).toBe('single');
    expect(parseChaosArgs(['--redis', 'cluster']).redis).toBe('cluster');
    expect(() => parseChaosArgs(['--redis', 'sentinel'])).toThrow('--redis must be single or cluster (got "sentinel")');
  });

  test('--faults takes a list of known kinds, the planted loss included; an unknown one is refused naming the known ones', () => {
    expect(parseChaosArgs([]).faultKinds).toBeUndefined();
    expect(parseChaosArgs(['--faults', 'redis-snapshot-restore,wrongtype-key']).faultKinds).toEqual(['redis-snapshot-restore', 'wrongtype-key']);
    expect(parseChaosArgs(['--faults', 'planted-loss']).faultKinds).toEqual(['planted-loss']);
    expect(() => parseChaosArgs(['--faults', 'sigkill,meteor'])).toThrow(/--faults: unknown kind\(s\) meteor; known: sigkill, zombie, .*planted-loss/);
    expect(() => parseChaosArgs(['--faults'])).toThrow('--faults needs a comma-separated list of fault kinds');
  });
});
