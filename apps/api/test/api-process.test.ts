/**
 * The built api (`dist/main.js`) as a real process: what it does with the
 * environments this repository ships (infra/k8s rendered by kustomize,
 * docker-compose.yml), the slow-provider attack on its pool, slow-body
 * connections, and `dev-token`. Each failed before issue 13 (the shipped
 * environments started the manual provider under NODE_ENV=production; 12
 * confirmations against a slow provider starved the pool and /readyz; a
 * trickled body held its socket for minutes; there was no dev-token).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments, parseDocument } from 'yaml';
import { domainMigrations } from '@petcover/domain';
import { startFakeDropboxSign, type FakeDropboxSign } from '@petcover/domain/testing';
import { outboxMigrations } from '@petcover/outbox';
import { createTestDatabase, freePort, testRedisUrl, uniqueRedisPrefix, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import { EXIT_CONFIG } from '@petcover/service-kit';
import { signOwnerToken } from '../src/auth/owner-token';
import { API_DIST, API_MAIN, REPO_ROOT, requireBuiltFiles } from './support/built-files';

const DEV_TOKEN = path.join(API_DIST, 'commands/dev-token.js');
const AUTH_SECRET = 'process-test-auth-secret-0123456789';
const run = promisify(execFile);

requireBuiltFiles([API_MAIN, DEV_TOKEN]);

// Each test starts node processes; on a loaded CI machine one start-up alone can take tens of seconds.
jest.setTimeout(300_000);
const START_TIMEOUT_MS = 120_000;

type Env = Record<string, string>;

interface ApiRun {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

const running: ApiRun[] = [];

function startApi(env: Env): ApiRun {
  const child = spawn(process.execPath, [API_MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const api = { child, output, exited: new Promise<number | null>((resolve) => child.once('exit', resolve)) };
  running.push(api);
  return api;
}

/** Resolves with the exit code when the api refused, or the 'api listening' log line when it started. */
async function startOrRefuse(env: Env): Promise<{ exitCode: number | null; stderr: string } | { listening: Record<string, unknown> }> {
  const api = startApi(env);
  return waitFor(
    () => {
      if (api.child.exitCode !== null) return { exitCode: api.child.exitCode, stderr: api.output.join('') };
      const line = api.output
        .join('')
        .split('\n')
        .find((l) => l.includes('"api listening"'));
      return line ? { listening: JSON.parse(line) as Record<string, unknown> } : undefined;
    },
    { timeoutMs: START_TIMEOUT_MS, intervalMs: 50, description: 'the api to start or refuse' },
  );
}

afterEach(async () => {
  for (const api of running.splice(0)) {
    if (api.child.exitCode === null) api.child.kill('SIGTERM');
    await api.exited;
  }
});

// ---------------------------------------------------------------------------
// The shipped environments.

/** The api container's environment in a rendered kustomization, resolved the way the kubelet would. */
function kubernetesApiEnv(rendered: string): Env {
  type Manifest = { kind: string; metadata: { name: string }; data?: Env; stringData?: Env; spec?: unknown };
  const docs: Manifest[] = parseAllDocuments(rendered).map((d) => d.toJS() as Manifest);
  const configMaps = new Map(docs.filter((d) => d.kind === 'ConfigMap').map((d) => [d.metadata.name, d.data ?? {}]));
  const secrets = new Map(
    docs
      .filter((d) => d.kind === 'Secret')
      .map((d) => [
        d.metadata.name,
        { ...Object.fromEntries(Object.entries(d.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])), ...d.stringData },
      ]),
  );
  const deployment = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'api');
  if (!deployment) throw new Error('no Deployment api in the rendered manifests');
  type Container = {
    name: string;
    envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
    env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } } }>;
  };
  const container = (deployment.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers.find((c) => c.name === 'api');
  if (!container) throw new Error('no container api in the Deployment');
  const env: Env = {};
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef) Object.assign(env, configMaps.get(source.configMapRef.name));
    if (source.secretRef) Object.assign(env, secrets.get(source.secretRef.name));
  }
  for (const entry of container.env ?? []) {
    const ref = entry.valueFrom?.secretKeyRef ?? entry.valueFrom?.configMapKeyRef;
    // A reference to a missing Secret or key leaves the variable unset (the kubelet would not even start the pod).
    const value = entry.value ?? (ref ? (entry.valueFrom?.secretKeyRef ? secrets : configMaps).get(ref.name)?.[ref.key] : undefined);
    if (value !== undefined) env[entry.name] = String(value);
    else delete env[entry.name];
  }
  return env;
}

/** A compose service's environment with `${VAR:-default}` interpolated from an empty shell environment. */
function composeServiceEnv(service: string): Env {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8');
  const interpolated = text.replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g, (_m, _name: string, fallback?: string) => fallback ?? '');
  const compose = parseDocument(interpolated, { merge: true }).toJS() as { services: Record<string, { environment?: Env | string[] }> };
  const environment = compose.services[service]?.environment;
  if (!environment) throw new Error(`docker-compose.yml has no environment for ${service}`);
  if (Array.isArray(environment)) return Object.fromEntries(environment.map((e) => e.split(/=(.*)/s).slice(0, 2) as [string, string]));
  return Object.fromEntries(Object.entries(environment).map(([k, v]) => [k, String(v)]));
}

function kustomize(dir: string): string {
  return execFileSync('kubectl', ['kustomize', path.join(REPO_ROOT, dir)], { encoding: 'utf8' });
}

function composeApiServices(): string[] {
  const compose = parseDocument(fs.readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }).toJS() as { services: Record<string, unknown> };
  return Object.keys(compose.services).filter((name) => /^api\b/.test(name));
}

const overlays = fs.readdirSync(path.join(REPO_ROOT, 'infra/k8s/overlays')).filter((d) => fs.existsSync(path.join(REPO_ROOT, 'infra/k8s/overlays', d, 'kustomization.yaml')));
const shippedEnvironments: Array<[string, () => Env]> = [
  ['infra/k8s/base (rendered)', () => kubernetesApiEnv(kustomize('infra/k8s/base'))],
  ...overlays.map((o): [string, () => Env] => [`infra/k8s/overlays/${o} (rendered)`, () => kubernetesApiEnv(kustomize(`infra/k8s/overlays/${o}`))]),
  ...composeApiServices().map((s): [string, () => Env] => [`docker-compose.yml service ${s}`, () => composeServiceEnv(s)]),
];

describe('the api with exactly the environment this repository ships', () => {
  test.each(shippedEnvironments)('%s: starts safely or refuses with exit 78 and one line', async (_where, environment) => {
    const env = environment();
    const port = String(await freePort());
    // Only the port differs (a free one on this shared machine).
    const outcome = await startOrRefuse({ ...env, PORT: port });
    const strict = env.NODE_ENV === 'production' || env.CI_STRICT === '1' || env.CI_STRICT === 'true';
    if ('exitCode' in outcome) {
      expect(outcome.exitCode).toBe(EXIT_CONFIG);
      expect(outcome.stderr.trim().split('\n')).toHaveLength(1);
      expect(outcome.stderr).toMatch(/^api: /);
      return;
    }
    // It started: then it must be safe for what it claims to be.
    if (strict) {
      expect(outcome.listening).toMatchObject({ autoEnroll: false });
      expect(outcome.listening.signatureProvider).not.toBe('manual');
    } else {
      // A development environment: explicitly not strict, nothing pretends to be production.
      expect(env.NODE_ENV).not.toBe('production');
    }
  });

  test('a strict environment with the manual provider, its published key or DEV_AUTO_ENROLL_PET refuses to start: a forged callback never meets a running api', async () => {
    const base: Env = {
      NODE_ENV: 'production',
      DATABASE_URL: 'postgresql://petcover:vault-password@127.0.0.1:5432/petcover',
      REDIS_URL: testRedisUrl(),
      AUTH_SECRET: 'x'.repeat(40),
      PORT: String(await freePort()),
    };
    for (const env of [base, { ...base, SIGNATURE_PROVIDER: 'manual' }, { ...base, SIGNATURE_PROVIDER: 'dropbox_sign', SIGNATURE_API_KEY: 'petcover-dev-signature-api-key' }, { ...base, SIGNATURE_PROVIDER: 'dropbox_sign', SIGNATURE_API_KEY: 'y'.repeat(40), DEV_AUTO_ENROLL_PET: '1' }]) {
      const outcome = await startOrRefuse(env);
      expect(outcome).toEqual({ exitCode: EXIT_CONFIG, stderr: expect.stringMatching(/^api: refusing to start in strict mode[^\n]*\n$/) });
    }
  });
});

// ---------------------------------------------------------------------------
// A running api on a test database with the fake Dropbox Sign.

describe('a running api against a slow provider and slow clients', () => {
  let database: TestDatabase;
  let fake: FakeDropboxSign;
  let storeDir: string;
  let base: string;
  let env: Env;

  beforeAll(async () => {
    database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations] });
    fake = await startFakeDropboxSign();
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-process-docs-'));
    const port = await freePort();
    env = {
      DATABASE_URL: database.url,
      REDIS_URL: testRedisUrl(),
      REDIS_KEY_PREFIX: uniqueRedisPrefix(),
      LOG_LEVEL: 'warn',
      PORT: String(port),
      AUTH_SECRET,
      SIGNATURE_PROVIDER: 'dropbox_sign',
      SIGNATURE_API_KEY: fake.apiKey,
      DROPBOX_SIGN_BASE_URL: fake.baseUrl,
      DOCUMENT_STORE_DIR: storeDir,
      RATE_LIMIT_OWNER_WRITES_PER_MINUTE: '1000',
      REQUEST_TIMEOUT_MS: '2000',
      HEADERS_TIMEOUT_MS: '1000',
    };
    base = `http://127.0.0.1:${port}`;
  });

  let api: ApiRun;
  beforeAll(async () => {
    api = startApi(env);
    // This one lives for the whole describe, not one test.
    running.splice(running.indexOf(api), 1);
    await waitFor(
      async () => {
        if (api.child.exitCode !== null) throw new Error(`api exited: ${api.output.join('').slice(-2000)}`);
        return (await fetch(`${base}/readyz`)).ok;
      },
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 200, description: 'api ready' },
    );
  });

  afterAll(async () => {
    if (api && api.child.exitCode === null) api.child.kill('SIGTERM');
    await api?.exited;
    await fake?.close();
    await database?.drop();
    if (storeDir) fs.rmSync(storeDir, { recursive: true, force: true });
  });

  async function token(owner: string): Promise<string> {
    const { stdout } = await run(process.execPath, [DEV_TOKEN, '--owner', owner], { env: { AUTH_SECRET } });
    return stdout.trim();
  }

  async function post(route: string, bearer: string, json?: unknown): Promise<Response> {
    return fetch(`${base}${route}`, {
      method: route.endsWith('/plan') ? 'PUT' : 'POST',
      headers: { authorization: `Bearer ${bearer}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
  }

  test('12 confirmations waiting on a slow provider leave GET /v1/plans and /readyz answering (no pooled connection held across the call)', async () => {
    // More confirmations than the api's pool has connections (10).
    const owners = Array.from({ length: 12 }, () => randomUUID());
    const drafts = await Promise.all(
      owners.map(async (owner) => {
        const bearer = await signOwnerToken({ secret: AUTH_SECRET }, owner);
        const added = (await (await post('/v1/pets', bearer, { name: 'Rex', species: 'dog', breed: 'Boxer', birthDate: '2020-01-01' })).json()) as { draft: { id: string } };
        expect((await post(`/v1/drafts/${added.draft.id}/plan`, bearer, { planCode: 'basic' })).status).toBe(200);
        return { bearer, draftId: added.draft.id };
      }),
    );
    const hold = fake.holdDispatches();
    let confirmations: Promise<number[]> | undefined;
    try {
      confirmations = Promise.all(drafts.map(async (d) => (await post(`/v1/drafts/${d.draftId}/confirm`, d.bearer)).status));
      await waitFor(() => fake.heldDispatches === 12, { timeoutMs: START_TIMEOUT_MS, description: '12 dispatches waiting at the provider' });
      const plans = await fetch(`${base}/v1/plans`);
      const ready = await fetch(`${base}/readyz`);
      expect([plans.status, ready.status]).toEqual([200, 200]);
      // Answered while every confirmation was still waiting on the provider.
      expect(fake.heldDispatches).toBe(12);
    } finally {
      hold.release();
    }
    expect(await confirmations).toEqual(Array(12).fill(202));
  });

  /**
   * A client that sends `start`, then `next(i)` every 200 ms for as long as
   * the api keeps the connection open; resolves with what the api answered.
   */
  async function trickle(start: string, next: (i: number) => string, description: string): Promise<string> {
    const socket = net.connect(Number(env.PORT), '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(start);
    let stillOpen = true;
    void closed.then(() => (stillOpen = false));
    let sent = 0;
    await waitFor(
      () => {
        if (stillOpen) socket.write(next((sent += 1)));
        return !stillOpen;
      },
      { timeoutMs: 30_000, intervalMs: 200, description },
    );
    return Buffer.concat(received).toString();
  }

  test('a client trickling its headers (never ending them) is answered 408 and cut off', async () => {
    // A header line every 200 ms, never the blank line that ends them.
    const answer = await trickle('GET /v1/plans HTTP/1.1\r\nHost: x\r\n', (i) => `X-Slow-${i}: 1\r\n`, 'the api to close the connection of slow headers');
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });

  test('a client trickling its body is cut off after REQUEST_TIMEOUT_MS', async () => {
    // A byte every 200 ms; the api must close the connection anyway.
    const answer = await trickle(
      'POST /v1/webhooks/signature HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"event":',
      () => ' ',
      'the api to close the slow connection',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });

  test('dev-token prints a token the api accepts, and is refused in strict mode', async () => {
    const owner = randomUUID();
    const bearer = await token(owner);
    const added = await post('/v1/pets', bearer, { name: 'Momo', species: 'cat', breed: 'Persian', birthDate: '2022-02-02' });
    expect(added.status).toBe(201);
    const refused = await run(process.execPath, [DEV_TOKEN, '--owner', owner], { env: { AUTH_SECRET, NODE_ENV: 'production' } }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
    expect(refused).toEqual({ code: EXIT_CONFIG, stderr: expect.stringContaining('dev-token is for development') });
    const usage = await run(process.execPath, [DEV_TOKEN, '--owner', 'nobody'], { env: { AUTH_SECRET } }).catch((error: { code: number }) => error);
    expect((usage as { code: number }).code).toBe(64);
  });
});
