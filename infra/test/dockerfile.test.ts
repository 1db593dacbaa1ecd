/**
 * The Dockerfile, without a Docker engine: its install step runs in a
 * directory holding only what the `deps` stage copies (so a file pnpm needs
 * and the stage forgets fails here, as `patches/` once did), and each app
 * stage's files come out of the build stage's `pnpm deploy` step: the
 * entrypoint is there, nothing but dist/ and production node_modules is, and
 * the app starts from them (migrations, /readyz 200, SIGTERM exit 0).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DockerfileParser, type Instruction, type JSONInstruction, type Env as EnvInstruction } from 'dockerfile-ast';
import { withDatabaseName } from '@petcover/outbox';
import { createTestRedis, deleteKeysWithPrefix, dropTestDatabase, freePort, testDatabaseBaseUrl, testRedisUrl, uniqueRedisPrefix, waitFor } from '@petcover/outbox/testing';
import { APPS, defaultPort, MIGRATE_COMMAND, ROOT, type AppSpec } from './apps';

const dockerfile = DockerfileParser.parse(fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));

interface Stage {
  name: string;
  base: string;
  instructions: Instruction[];
}

const stages: Stage[] = [];
for (const instruction of dockerfile.getInstructions()) {
  if (instruction.getKeyword() === 'FROM') {
    const [base, as, name] = instruction.getArguments().map((a) => a.getValue());
    if (as?.toUpperCase() !== 'AS' || !name) throw new Error(`FROM without a stage name: ${instruction.getArgumentsContent()}`);
    stages.push({ name, base: base!, instructions: [] });
  } else {
    stages.at(-1)?.instructions.push(instruction);
  }
}
const stage = (name: string): Stage => {
  const found = stages.find((s) => s.name === name);
  if (!found) throw new Error(`the Dockerfile has no stage ${name}`);
  return found;
};
const ofKind = (s: Stage, keyword: string) => s.instructions.filter((i) => i.getKeyword() === keyword);
const flag = (i: Instruction, name: string) => (i as unknown as { getFlags(): Array<{ getName(): string; getValue(): string }> }).getFlags().find((f) => f.getName() === name)?.getValue();
const args = (i: Instruction) => i.getArguments().map((a) => a.getValue());
/** The shell text of a RUN, its --mount flags aside (they only add a cache). */
const shellOf = (i: Instruction) => i.getArgumentsContent()!;
/** ENV name=value pairs of a stage, and of the stages it is built FROM. */
function stageEnv(s: Stage): Record<string, string> {
  const parent = stages.find((p) => p.name === s.base);
  const env: Record<string, string> = parent ? stageEnv(parent) : {};
  for (const i of ofKind(s, 'ENV') as EnvInstruction[]) for (const p of i.getProperties()) env[p.getName()] = p.getValue()!;
  return env;
}

const scratchDirs: string[] = [];
function scratch(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `petcover-${name}-`));
  scratchDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of scratchDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** Every process a test started, killed at the end if still running. */
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** Runs `sh -c script` in `cwd`; resolves with the exit code and the output's tail. */
function runShell(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('close', (code) => resolve({ code, output }));
  });
}

const pnpmStore = execFileSync('pnpm', ['store', 'path'], { cwd: ROOT, encoding: 'utf8' }).trim();

test('every stage builds FROM the pinned node 20 patch release on bookworm-slim, or FROM an earlier stage', () => {
  const [arg] = dockerfile.getARGs().filter((a) => a.getProperty()?.getName() === 'NODE_IMAGE');
  const image = arg!.getProperty()!.getValue()!;
  expect(image).toMatch(/^node:20\.\d+\.\d+-bookworm-slim$/);
  // The same major as the node the tests run on.
  expect(image.split(':')[1]!.split('.')[0]).toBe(process.versions.node.split('.')[0]);
  for (const s of stages) expect([s.name, s.base === '${NODE_IMAGE}' || stages.indexOf(stage(s.base)) < stages.indexOf(s)]).toEqual([s.name, true]);
  expect(stages.map((s) => s.name)).toEqual(['deps', 'build', 'runtime', ...APPS.map((a) => a.target)]);
});

test('runtime: tini as PID 1, a numeric non-root user, SIGTERM, a HEALTHCHECK on /healthz at the port the app stage sets', () => {
  const runtime = stage('runtime');
  expect((ofKind(runtime, 'ENTRYPOINT')[0] as JSONInstruction).getJSONStrings().map((s) => s.getJSONValue())).toEqual(['/usr/bin/tini', '--']);
  expect(shellOf(ofKind(runtime, 'RUN')[0]!)).toContain('apt-get install -y --no-install-recommends tini');
  const [user] = ofKind(runtime, 'USER').map((i) => args(i)[0]!);
  expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
  expect(args(ofKind(runtime, 'STOPSIGNAL')[0]!)).toEqual(['SIGTERM']);
  const healthcheck = ofKind(runtime, 'HEALTHCHECK')[0]!.getArgumentsContent()!;
  expect(healthcheck).toContain("(process.env.PORT || process.env.HEALTH_PORT) + '/healthz'");
  for (const app of APPS) {
    const s = stage(app.target);
    const env = stageEnv(s);
    expect([app.dir, Number(env[app.portVar])]).toEqual([app.dir, defaultPort(app)]);
    // The healthcheck takes PORT first: only the api may set it.
    if (app.portVar === 'HEALTH_PORT') expect(env.PORT).toBeUndefined();
    expect(args(ofKind(s, 'EXPOSE')[0]!)).toEqual([String(defaultPort(app))]);
    expect(ofKind(s, 'USER')).toEqual([]);
  }
});

test("install step: in a directory holding only what the deps stage copies, the stage's pnpm command installs from the frozen lockfile", async () => {
  const deps = stage('deps');
  const install = ofKind(deps, 'RUN').find((i) => /\bpnpm install\b/.test(shellOf(i)))!;
  expect(shellOf(install)).toBe('pnpm install --frozen-lockfile');
  const workdir = args(ofKind(deps, 'WORKDIR')[0]!)[0]!;
  const dir = scratch('deps');
  const copied: string[] = [];
  for (const copy of deps.instructions.slice(0, deps.instructions.indexOf(install)).filter((i) => i.getKeyword() === 'COPY')) {
    expect(flag(copy, 'from')).toBeUndefined();
    const [dest, ...sources] = args(copy).reverse();
    for (const source of sources) {
      const from = path.join(ROOT, source);
      const to = path.join(dir, path.relative(workdir, path.resolve(workdir, dest!)));
      if (fs.statSync(from).isDirectory()) fs.cpSync(from, to, { recursive: true });
      else fs.cpSync(from, dest!.endsWith('/') ? path.join(to, path.basename(source)) : to);
      copied.push(source.replace(/\/$/, ''));
    }
  }
  // Exactly what pnpm reads: root files, patches, and the package.json of every workspace package.
  const packages = JSON.parse(execFileSync('pnpm', ['-r', 'ls', '--depth', '-1', '--json'], { cwd: ROOT, encoding: 'utf8' })) as Array<{ path: string }>;
  const manifests = packages.map((p) => path.relative(ROOT, path.join(p.path, 'package.json')));
  expect(copied.sort()).toEqual(['.npmrc', 'patches', 'pnpm-lock.yaml', 'pnpm-workspace.yaml', ...manifests].sort());

  // The pnpm corepack would run in the image (package.json's packageManager).
  const packageManager = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).packageManager as string;
  expect(`pnpm@${execFileSync('pnpm', ['--version'], { encoding: 'utf8' }).trim()}`).toBe(packageManager);
  // The stage's ENV, except the paths of the image's own layout; the machine's
  // store stands in for the build cache mount.
  const { PATH: _path, PNPM_HOME: _home, ...env } = stageEnv(deps);
  const result = await runShell(shellOf(install), dir, { ...process.env, ...env, npm_config_store_dir: pnpmStore });
  expect([result.code, result.code === 0 ? '' : result.output]).toEqual([0, '']);
  for (const app of APPS) expect(fs.existsSync(path.join(dir, 'apps', app.dir, 'node_modules', '@petcover', 'outbox', 'package.json'))).toBe(true);
});

describe("each app stage, assembled from the build stage's `pnpm deploy` output", () => {
  const out = scratch('deploy');
  const images = new Map<string, string>();
  const databaseUrl = withDatabaseName(testDatabaseBaseUrl(), `petcover_infra_${randomBytes(4).toString('hex')}`);
  const redisPrefix = uniqueRedisPrefix();

  beforeAll(async () => {
    // The build stage's deploy RUN, verbatim, with /out in a scratch directory.
    // Its turbo build has already run here: `pnpm test` builds the apps first.
    const deploy = ofKind(stage('build'), 'RUN').find((i) => /\bdeploy --prod\b/.test(shellOf(i)))!;
    const script = shellOf(deploy).replaceAll('/out/', `${out}/`);
    const result = await runShell(script, ROOT, { ...process.env, CI: 'true', npm_config_store_dir: pnpmStore });
    if (result.code !== 0) throw new Error(`pnpm deploy failed (${result.code}):\n${result.output}`);
    for (const app of APPS) {
      const image = scratch(`image-${app.target}`);
      for (const copy of ofKind(stage(app.target), 'COPY')) {
        expect(flag(copy, 'from')).toBe('build');
        const [dest, ...sources] = args(copy).reverse();
        for (const source of sources) {
          const from = path.join(out, path.relative('/out', source));
          const to = path.join(image, path.relative('/app', dest!));
          fs.cpSync(from, fs.statSync(from).isDirectory() || !dest!.endsWith('/') ? to : path.join(to, path.basename(source)), { recursive: true });
        }
      }
      images.set(app.target, image);
    }
    // Three `pnpm deploy`s resolve ~700 packages each: minutes on a loaded machine.
  }, 900_000);

  afterAll(async () => {
    await dropTestDatabase(databaseUrl);
    const redis = createTestRedis();
    await deleteKeysWithPrefix(redis, redisPrefix);
    redis.disconnect();
  });

  test.each(APPS)('$dir: package.json, dist/ and production node_modules only; the CMD entrypoint is there', (app) => {
    const image = images.get(app.target)!;
    expect(fs.readdirSync(image).sort()).toEqual(['dist', 'node_modules', 'package.json']);
    const cmd = (ofKind(stage(app.target), 'CMD')[0] as JSONInstruction).getJSONStrings().map((s) => s.getJSONValue());
    expect(cmd[0]).toBe('node');
    const entry = cmd.slice(1).find((a) => !a.startsWith('-'))!;
    expect(fs.existsSync(path.join(image, entry))).toBe(true);
    for (const pkg of fs.readdirSync(path.join(image, 'node_modules', '@petcover'))) {
      const files = fs.readdirSync(path.join(image, 'node_modules', '@petcover', pkg));
      expect([pkg, files.filter((f) => ['src', 'test', 'tsconfig.json', 'jest.config.js'].includes(f))]).toEqual([pkg, []]);
    }
    // The runbook's `node_modules/.bin/events status` inside a container.
    expect(fs.existsSync(path.join(image, 'node_modules', '.bin', 'events'))).toBe(true);
    // Production dependencies only: no test runner, no compiler.
    for (const dev of ['jest', 'typescript', 'tsx', 'ts-jest']) expect([dev, fs.existsSync(path.join(image, 'node_modules', dev))]).toEqual([dev, false]);
  });

  test('the api image runs the migration command of the Job and compose', async () => {
    const result = await runShell(MIGRATE_COMMAND.join(' '), images.get('api')!, { PATH: process.env.PATH, DATABASE_URL: databaseUrl });
    expect([result.code, result.code === 0 ? '' : result.output]).toEqual([0, '']);
  });

  test.each(APPS)('$dir starts from its image files with the stage ENV and CMD, answers /readyz 200, stops 0 on SIGTERM', async (app: AppSpec) => {
    const s = stage(app.target);
    const port = await freePort();
    const cmd = (ofKind(s, 'CMD')[0] as JSONInstruction).getJSONStrings().map((x) => x.getJSONValue());
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      ...stageEnv(s),
      [app.portVar]: String(port),
      DATABASE_URL: databaseUrl,
      REDIS_URL: testRedisUrl(),
      REDIS_KEY_PREFIX: redisPrefix,
      LOG_LEVEL: 'warn',
      AUTH_SECRET: randomBytes(24).toString('hex'),
      SIGNATURE_PROVIDER: 'dropbox_sign',
      SIGNATURE_API_KEY: randomBytes(16).toString('hex'),
    };
    expect(env.NODE_ENV).toBe('production');
    const child = spawn(process.execPath, cmd.slice(1), { cwd: images.get(app.target)!, env, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4_000)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const stopped = () => child.exitCode !== null || child.signalCode !== null;
    await waitFor(async () => stopped() || (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, {
      timeoutMs: 90_000,
      intervalMs: 250,
      description: `${app.dir} /readyz 200`,
    }).catch((error: Error) => {
      throw new Error(`${error.message}\n${stderr}`);
    });
    if (stopped()) throw new Error(`${app.dir} exited ${child.exitCode ?? child.signalCode} before it was ready:\n${stderr}`);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
