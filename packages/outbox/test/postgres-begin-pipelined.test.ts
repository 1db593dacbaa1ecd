/**
 * Our patch of postgres.js (patches/postgres@3.4.7.patch, issue 20): a plain
 * BEGIN is handed to its connection without waiting for its answer, so the
 * transaction's first statement leaves in the same write. Checked on the
 * wire: a proxy between the client and Postgres holds back every answer from
 * the server, and the first statement must still arrive behind the BEGIN.
 * Then what the patch must not change: a BEGIN with options is still waited
 * for, and a failing transaction still rolls back.
 */
import net from 'node:net';
import postgres from 'postgres';
import { createTestDatabase, waitFor, type TestDatabase } from '../src/testing';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase({ poolSize: 2 });
  await testDb.sql`CREATE TABLE public.pipelined (note text NOT NULL)`;
});
afterAll(async () => testDb.drop());

/** A TCP proxy to Postgres that can hold back the server's answers; records what the client sent. */
async function answerHoldingProxy(): Promise<{ url: string; fromClient: () => string; hold(): void; release(): void; close(): Promise<void> }> {
  const target = new URL(testDb.url);
  let sent = '';
  let holding = false;
  const held: { socket: net.Socket; data: Buffer }[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    client.on('data', (data) => {
      sent += data.toString('latin1');
      upstream.write(data);
    });
    upstream.on('data', (data) => (holding ? held.push({ socket: client, data }) : client.write(data)));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(testDb.url);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    fromClient: () => sent,
    hold: () => {
      holding = true;
      sent = '';
    },
    release: () => {
      holding = false;
      for (const { socket, data } of held.splice(0)) socket.write(data);
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('a plain BEGIN and the first statement leave together: the statement reaches the server before any answer', async () => {
  const proxy = await answerHoldingProxy();
  const client = postgres(proxy.url, { max: 1, onnotice: () => undefined });
  try {
    await client`SELECT 1`; // connected, types fetched
    proxy.hold();
    const transaction = client.begin(async (tx) => {
      await tx`INSERT INTO public.pipelined (note) VALUES ('first statement marker')`;
    });
    transaction.catch(() => undefined);
    await waitFor(() => /begin[\s\S]*first statement marker/i.test(proxy.fromClient()), {
      timeoutMs: 5_000,
      description: 'the first statement sent behind BEGIN while BEGIN is unanswered',
    });
    proxy.release();
    await transaction;
    const [row] = await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM public.pipelined WHERE note = 'first statement marker'`;
    expect(row!.n).toBe(1);
  } finally {
    proxy.release();
    await client.end({ timeout: 5 });
    await proxy.close();
  }
});

test('a BEGIN with options is still answered before the first statement leaves (a wrong option must not leave it outside a transaction)', async () => {
  const proxy = await answerHoldingProxy();
  const client = postgres(proxy.url, { max: 1, onnotice: () => undefined });
  try {
    await client`SELECT 1`;
    proxy.hold();
    const transaction = client.begin('read write', async (tx) => {
      await tx`INSERT INTO public.pipelined (note) VALUES ('with options marker')`;
    });
    transaction.catch(() => undefined);
    await waitFor(() => /begin read write/i.test(proxy.fromClient()), { timeoutMs: 5_000, description: 'BEGIN read write sent' });
    // A pipelined statement would have left in BEGIN's write; give the event loop turns to deliver anything more.
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(proxy.fromClient()).not.toMatch(/with options marker/);
    proxy.release();
    await transaction;
  } finally {
    proxy.release();
    await client.end({ timeout: 5 });
    await proxy.close();
  }
});

test('a transaction whose statement fails still rolls back everything, the pipelined BEGIN included', async () => {
  await expect(
    testDb.sql.begin(async (tx) => {
      await tx`INSERT INTO public.pipelined (note) VALUES ('rolled back')`;
      await tx`SELECT 1/0`;
    }),
  ).rejects.toThrow(/division by zero/);
  const [row] = await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM public.pipelined WHERE note = 'rolled back'`;
  expect(row!.n).toBe(0);
});
