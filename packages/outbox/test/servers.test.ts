import Redis from 'ioredis';
import postgres from 'postgres';
import { freePort, startDedicatedPostgres, startDedicatedRedis } from '../src/testing';

describe('dedicated servers for fault tests', () => {
  test('redis restarts empty on the same port', async () => {
    const server = await startDedicatedRedis();
    const client = new Redis(server.url, { lazyConnect: true });
    try {
      await client.connect();
      await client.set('k', 'v');
      await server.restart();
      expect(await client.get('k')).toBeNull();
    } finally {
      client.disconnect();
      await server.destroy();
    }
  });

  test('redis restarted from a snapshot comes back as it was at SAVE (whileDown runs while it is down); a plain restart after it is empty', async () => {
    const server = await startDedicatedRedis();
    const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.set('before', '1');
      await server.saveSnapshot();
      await client.set('after', '2');
      let downWhenCalled = false;
      await server.restartFromSnapshot({
        whileDown: async () => {
          const probe = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
          probe.on('error', () => undefined);
          downWhenCalled = await probe.connect().then(() => false, () => true);
          probe.disconnect();
        },
      });
      expect(downWhenCalled).toBe(true);
      expect(await client.get('before')).toBe('1');
      expect(await client.get('after')).toBeNull();
      await server.restart();
      expect(await client.get('before')).toBeNull();
    } finally {
      client.disconnect();
      await server.destroy();
    }
  });

  test('postgres keeps committed data across a fast restart', async () => {
    const server = await startDedicatedPostgres();
    const sql = postgres(server.url, { max: 1, onnotice: () => undefined });
    try {
      await sql`CREATE TABLE t (v int)`;
      await sql`INSERT INTO t VALUES (42)`;
      await server.restart();
      const [row] = await sql`SELECT v FROM t`;
      expect(row?.v).toBe(42);
    } finally {
      await sql.end({ timeout: 1 });
      await server.destroy();
    }
  });
});

test('freePort never hands out the same port twice in a process (the kernel may pick a just-released port again)', async () => {
  // Seen in pnpm chaos: a publisher and a consumer got one health port, and the consumer could not start.
  // 500 draws from the ~28,000-port ephemeral range repeat a port almost surely when nothing prevents it.
  const ports: number[] = [];
  for (let i = 0; i < 500; i++) ports.push(await freePort());
  expect(new Set(ports).size).toBe(ports.length);
});
