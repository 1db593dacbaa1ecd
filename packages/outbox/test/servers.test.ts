import Redis from 'ioredis';
import postgres from 'postgres';
import { startDedicatedPostgres, startDedicatedRedis } from '../src/testing';

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
