import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRedisClient, readRedisConnection } from '@petcover/service-kit';
import { AUTOVACUUM, backendLabel, cpuBetween, localRedisPid, processCpuSeconds, PRODUCER_SESSIONS, SYSTEM_SESSIONS, trackCpu, type CpuSnapshot } from '../src/process-cpu';
import { connectDatabase, withDatabaseName } from '@petcover/outbox';
import { DEFAULT_DATABASE_URL } from '@petcover/service-kit';

describe('CPU time from /proc', () => {
  it("reads this process's CPU seconds, which grow while it computes", () => {
    const before = processCpuSeconds(process.pid) as number;
    const until = Date.now() + 150;
    let x = 0;
    while (Date.now() < until) x += Math.sqrt(x + 1);
    expect(x).toBeGreaterThan(0);
    expect(processCpuSeconds(process.pid)).toBeGreaterThan(before);
    expect(processCpuSeconds(2 ** 22 + 12345)).toBeNull();
  });

  it('sums by label; a process first seen at the end counts from zero', () => {
    const before: CpuSnapshot = new Map([
      [10, { label: 'publisher', seconds: 5 }],
      [11, { label: PRODUCER_SESSIONS, seconds: 1 }],
    ]);
    const after: CpuSnapshot = new Map([
      [10, { label: 'publisher', seconds: 7.5 }],
      [11, { label: PRODUCER_SESSIONS, seconds: 1.25 }],
      [12, { label: PRODUCER_SESSIONS, seconds: 0.5 }],
    ]);
    expect(cpuBetween(before, after)).toEqual({ publisher: 2.5, [PRODUCER_SESSIONS]: 0.75 });
  });

  it("tells producer sessions, the system's sessions and autovacuum apart, and leaves out the harness", () => {
    expect(backendLabel('pgbench', 'client backend')).toBe(PRODUCER_SESSIONS);
    expect(backendLabel('petcover-bench-producer', 'client backend')).toBe(PRODUCER_SESSIONS);
    expect(backendLabel('events-publisher', 'client backend')).toBe(SYSTEM_SESSIONS);
    expect(backendLabel('', 'client backend')).toBe(SYSTEM_SESSIONS);
    expect(backendLabel('', 'autovacuum worker')).toBe(AUTOVACUUM);
    expect(backendLabel('petcover-bench', 'client backend')).toBeNull();
  });

  it("finds the local redis-server's pid from INFO, and refuses a pid that is not redis-server", async () => {
    const redis = createRedisClient(readRedisConnection(process.env));
    try {
      const pid = localRedisPid(await redis.info('server'));
      expect(pid).not.toBeNull();
      expect(processCpuSeconds(pid as number)).not.toBeNull();
      expect(localRedisPid(`process_id:${process.pid}\r\n`)).toBeNull();
      expect(localRedisPid('redis_version:7\r\n')).toBeNull();
    } finally {
      redis.disconnect();
    }
  });

  it('keeps the last reading of a process that ended inside the window', async () => {
    const child = spawn(process.execPath, ['-e', 'const t = Date.now() + 400; let x = 0; while (Date.now() < t) x += Math.sqrt(x + 1);']);
    const pid = child.pid as number;
    const db = connectDatabase(process.env.DATABASE_URL || withDatabaseName(DEFAULT_DATABASE_URL, 'postgres'), { max: 1, applicationName: 'petcover-bench' });
    try {
      const tracker = trackCpu({ processes: [{ name: 'busy child', pid }], sql: db.sql, redisPid: null }, 50);
      await once(child, 'exit');
      const snapshot = await tracker.stop();
      expect(snapshot.get(pid)?.label).toBe('busy child');
      expect(snapshot.get(pid)?.seconds).toBeGreaterThan(0);
    } finally {
      child.kill();
      await db.close();
    }
  });
});
