/**
 * The deployment files agree with the code: every env var that
 * docker-compose.yml, infra/k8s and the Dockerfiles set is one the app's
 * config schema (`envSchema` of apps/<app>/src/env.ts) reads; probes hit
 * `/readyz` and `/healthz` (which each app's gates test proves it serves) on
 * the port the app listens on; no secret value is committed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { ZodObject, ZodRawShape } from 'zod';

const ROOT = path.join(__dirname, '..', '..', '..');

interface AppSpec {
  dir: string;
  pkg: string;
  deployment: string;
  composeService: string;
  /** The env var that sets the port serving /healthz, /readyz and /metrics. */
  portVar: 'PORT' | 'HEALTH_PORT';
  /** How long the app's own shutdown may take (createShutdown timeout in its main.ts). */
  drainSeconds: number;
}

const APPS: AppSpec[] = [
  { dir: 'api', pkg: '@petcover/api', deployment: 'api', composeService: 'api', portVar: 'PORT', drainSeconds: 10 },
  { dir: 'events-publisher', pkg: '@petcover/events-publisher', deployment: 'events-publisher', composeService: 'publisher', portVar: 'HEALTH_PORT', drainSeconds: 10 },
  { dir: 'events-consumer', pkg: '@petcover/events-consumer', deployment: 'events-consumer', composeService: 'consumer', portVar: 'HEALTH_PORT', drainSeconds: 30 },
];

/** The migration command reads only DATABASE_URL (packages/domain/src/cli/migrate.ts). */
const MIGRATE_ENV = ['DATABASE_URL'];
const SECRET_NAME = /(PASSWORD|SECRET|API_KEY|TOKEN)$|^DATABASE_URL$/;
const URL_WITH_PASSWORD = /:\/\/[^/:@\s]*:([^@\s]+)@/;
const PLACEHOLDER = 'REPLACE_ME';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = any;

function loadYaml(file: string): Doc[] {
  return parseAllDocuments(fs.readFileSync(file, 'utf8'), { merge: true })
    .map((d) => d.toJS({ maxAliasCount: 100 }))
    .filter(Boolean);
}

function listYaml(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return listYaml(full);
    return e.name.endsWith('.yaml') || e.name.endsWith('.yml') ? [full] : [];
  });
}

function envSchemaOf(app: AppSpec): ZodObject<ZodRawShape> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(path.join(ROOT, 'apps', app.dir, 'src', 'env.ts')).envSchema;
}

function defaultPort(app: AppSpec): number {
  const parsed = envSchemaOf(app).safeParse({});
  if (!parsed.success) throw new Error(`envSchema of ${app.dir} has no defaults: ${parsed.error.message}`);
  return Number((parsed.data as Record<string, unknown>)[app.portVar]);
}

const k8sDocs = listYaml(path.join(ROOT, 'infra', 'k8s')).flatMap((file) => loadYaml(file).map((doc) => ({ file, doc })));
const k8s = (kind: string, name?: string) => k8sDocs.filter(({ doc }) => doc.kind === kind && (!name || doc.metadata?.name === name)).map(({ doc }) => doc);
const compose = loadYaml(path.join(ROOT, 'docker-compose.yml'))[0];

/** Env var names a k8s container receives, with the literal values set inline. */
function containerEnv(container: Doc): Map<string, string | undefined> {
  const env = new Map<string, string | undefined>();
  for (const source of container.envFrom ?? []) {
    const ref = source.configMapRef ?? source.secretRef;
    const [object] = k8s(source.configMapRef ? 'ConfigMap' : 'Secret', ref.name);
    expect(object).toBeDefined();
    for (const key of Object.keys({ ...object.data, ...object.stringData })) env.set(key, undefined);
  }
  for (const entry of container.env ?? []) env.set(entry.name, entry.value);
  return env;
}

describe.each(APPS)('$dir', (app) => {
  const schemaKeys = new Set(Object.keys(envSchemaOf(app).shape));
  const port = () => {
    const env = containerEnv(k8s('Deployment', app.deployment)[0].spec.template.spec.containers[0]);
    return Number(env.get(app.portVar) ?? defaultPort(app));
  };

  test('Kubernetes Deployment: env vars read by envSchema, probes, ports, metrics annotations, replicas, grace, resources', () => {
    const [deployment] = k8s('Deployment', app.deployment);
    expect(deployment).toBeDefined();
    const spec = deployment.spec.template.spec;
    const [container] = spec.containers;
    const env = containerEnv(container);
    for (const name of env.keys()) expect([app.dir, name, schemaKeys.has(name)]).toEqual([app.dir, name, true]);
    expect(env.has('DATABASE_URL') && env.has('REDIS_URL')).toBe(true);

    const listenPort = Number(env.get(app.portVar) ?? defaultPort(app));
    const portByName = new Map<string, number>(container.ports.map((p: Doc) => [p.name, p.containerPort]));
    expect([...portByName.values()]).toEqual([listenPort]);
    const probePort = (probe: Doc) => (typeof probe.httpGet.port === 'string' ? portByName.get(probe.httpGet.port) : probe.httpGet.port);
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(probePort(container.readinessProbe)).toBe(listenPort);
    expect(probePort(container.livenessProbe)).toBe(listenPort);
    expect(deployment.spec.template.metadata.annotations).toEqual({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(listenPort),
      'prometheus.io/path': '/metrics',
    });

    expect(deployment.spec.replicas).toBe(2);
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(app.drainSeconds);
    expect(container.resources.requests).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
    expect(container.resources.limits).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
    expect(spec.securityContext.runAsNonRoot).toBe(true);

    const labels = deployment.spec.selector.matchLabels;
    expect(deployment.spec.template.metadata.labels).toMatchObject(labels);
    const pdbs = k8s('PodDisruptionBudget').filter((p) => JSON.stringify(p.spec.selector.matchLabels) === JSON.stringify(labels));
    expect(pdbs).toHaveLength(1);
  });

  test('docker-compose service: env vars read by envSchema, healthcheck on /readyz at the app port, ports, ordering', () => {
    const service = compose.services[app.composeService];
    expect(service).toBeDefined();
    const env = service.environment as Record<string, string>;
    for (const name of Object.keys(env)) expect([app.dir, name, schemaKeys.has(name)]).toEqual([app.dir, name, true]);
    const listenPort = Number(env[app.portVar] ?? defaultPort(app));
    expect(listenPort).toBe(port());
    expect(service.ports).toEqual([`${listenPort}:${listenPort}`]);
    expect(service.healthcheck.test.join(' ')).toContain(`http://127.0.0.1:${listenPort}/readyz`);
    expect(service.build.dockerfile).toBe(`apps/${app.dir}/Dockerfile`);
    expect(service.depends_on).toMatchObject({
      migrate: { condition: 'service_completed_successfully' },
      postgres: { condition: 'service_healthy' },
      redis: { condition: 'service_healthy' },
    });
    expect(Number.parseInt(service.stop_grace_period, 10)).toBeGreaterThan(app.drainSeconds);
  });

  test('Dockerfile: multi-stage pnpm deploy of this package, non-root, node dist/main.js, SIGTERM, exposes the app port', () => {
    const dockerfile = fs.readFileSync(path.join(ROOT, 'apps', app.dir, 'Dockerfile'), 'utf8');
    expect(dockerfile.match(/^FROM /gm)).toHaveLength(2);
    expect(dockerfile).toContain(`pnpm --filter=${app.pkg} deploy --prod`);
    expect(dockerfile).toContain(`--filter=${app.pkg}...`);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^STOPSIGNAL SIGTERM$/m);
    expect(dockerfile).toMatch(/^CMD \["node", (?:"--[a-z-]+=\d+", )*"dist\/main\.js"\]$/m);
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${port()}$`, 'm'));
    expect(dockerfile).toContain(`process.env.${app.portVar} || ${port()}`);
    expect(JSON.parse(fs.readFileSync(path.join(ROOT, 'apps', app.dir, 'package.json'), 'utf8')).name).toBe(app.pkg);
  });
});

describe('migrations', () => {
  test('the Job and the compose service run the migrate command with DATABASE_URL only, before the apps', () => {
    const [job] = k8s('Job', 'petcover-migrate');
    const [container] = job.spec.template.spec.containers;
    expect(container.command).toEqual(['node', 'node_modules/@petcover/domain/dist/cli/migrate.js']);
    expect([...containerEnv(container).keys()]).toEqual(MIGRATE_ENV);
    expect(fs.existsSync(path.join(ROOT, 'packages', 'domain', 'src', 'cli', 'migrate.ts'))).toBe(true);
    const service = compose.services.migrate;
    expect(service.command).toEqual(container.command);
    expect(Object.keys(service.environment)).toEqual(MIGRATE_ENV);
    expect(service.restart).toBe('no');
  });
});

describe('no secret value is committed', () => {
  test('Kubernetes: Secrets hold placeholders only; nothing else carries a secret or a URL with a password', () => {
    const secrets = k8s('Secret');
    expect(secrets.length).toBeGreaterThan(0);
    for (const secret of secrets) {
      expect(secret.data).toBeUndefined();
      for (const value of Object.values(secret.stringData ?? {})) expect(value).toBe(PLACEHOLDER);
    }
    for (const { file, doc } of k8sDocs) {
      if (doc.kind === 'Secret') continue;
      const text = JSON.stringify(doc);
      expect([file, URL_WITH_PASSWORD.test(text)]).toEqual([file, false]);
    }
    for (const deployment of [...k8s('Deployment'), ...k8s('Job')]) {
      const containers = (deployment.spec.template ?? deployment.spec.jobTemplate).spec.containers;
      for (const entry of containers.flatMap((c: Doc) => c.env ?? [])) {
        if (SECRET_NAME.test(entry.name)) expect([entry.name, entry.valueFrom?.secretKeyRef?.name]).toEqual([entry.name, 'petcover-secrets']);
      }
    }
  });

  test('docker-compose: secrets come from the environment, with local-development defaults marked dev-only', () => {
    for (const [name, service] of Object.entries<Doc>(compose.services)) {
      for (const [key, value] of Object.entries<string>(service.environment ?? {})) {
        const password = URL_WITH_PASSWORD.exec(String(value))?.[1];
        if (password) expect([name, key, password]).toEqual([name, key, expect.stringMatching(/^\$\{[A-Z_]+:-[^}]*dev-only[^}]*\}$/)]);
        if (SECRET_NAME.test(key) && !password) {
          expect([name, key, value]).toEqual([name, key, expect.stringMatching(/^\$\{[A-Z_]+:-[^}]*dev-only[^}]*\}$/)]);
        }
      }
    }
  });
});
