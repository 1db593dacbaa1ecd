/**
 * The three apps as the deployment files know them, and the files themselves
 * (Dockerfile, rendered Kubernetes overlays, docker-compose.yml), loaded the
 * way their tools read them. Shared by the infra tests.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { ZodObject, ZodRawShape } from 'zod';

export const ROOT = path.join(__dirname, '..', '..');

export interface AppSpec {
  dir: string;
  pkg: string;
  /** Dockerfile stage (`docker build --target`), Deployment name and image name suffix. */
  target: string;
  composeService: string;
  /** The env var that sets the port serving /healthz, /readyz and /metrics. */
  portVar: 'PORT' | 'HEALTH_PORT';
  /** How long the app's own shutdown may take (createShutdown timeout in its main.ts). */
  drainSeconds: number;
}

export const APPS: AppSpec[] = [
  { dir: 'api', pkg: '@petcover/api', target: 'api', composeService: 'api', portVar: 'PORT', drainSeconds: 10 },
  { dir: 'events-publisher', pkg: '@petcover/events-publisher', target: 'events-publisher', composeService: 'publisher', portVar: 'HEALTH_PORT', drainSeconds: 10 },
  { dir: 'events-consumer', pkg: '@petcover/events-consumer', target: 'events-consumer', composeService: 'consumer', portVar: 'HEALTH_PORT', drainSeconds: 30 },
];

/** The migration command (packages/domain/src/cli/migrate.ts) reads only DATABASE_URL. */
export const MIGRATE_COMMAND = ['node', 'node_modules/@petcover/domain/dist/cli/migrate.js'];
export const MIGRATE_ENV = ['DATABASE_URL'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Doc = any;

export function envSchemaOf(app: AppSpec): ZodObject<ZodRawShape> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(path.join(ROOT, 'apps', app.dir, 'src', 'env.ts')).envSchema;
}

/** Env names an app reads (its envSchema's keys). */
export function envNamesOf(app: AppSpec): Set<string> {
  return new Set(Object.keys(envSchemaOf(app).shape));
}

export function defaultPort(app: AppSpec): number {
  const parsed = envSchemaOf(app).safeParse({});
  if (!parsed.success) throw new Error(`envSchema of ${app.dir} has no defaults: ${parsed.error.message}`);
  return Number((parsed.data as Record<string, unknown>)[app.portVar]);
}

/** YAML as compose reads it: anchors and `<<` merge keys resolved. */
export function loadYaml(text: string): Doc[] {
  return parseAllDocuments(text, { merge: true })
    .map((d) => {
      if (d.errors.length > 0) throw new Error(d.errors.map((e) => e.message).join('; '));
      return d.toJS({ maxAliasCount: 100 });
    })
    .filter(Boolean);
}

export const OVERLAYS = ['dev', 'production'] as const;
export type Overlay = (typeof OVERLAYS)[number];

/**
 * `kubectl kustomize infra/k8s/overlays/<name>`: what `kubectl apply -k`
 * sends. kubectl comes with the machine image of CI (.ci/run checks it).
 */
export function renderOverlay(name: Overlay | 'base'): Doc[] {
  const dir = path.join(ROOT, 'infra', 'k8s', name === 'base' ? 'base' : `overlays/${name}`);
  let out: string;
  try {
    out = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error('kubectl is not installed: the Kubernetes tests render overlays with `kubectl kustomize` (see .ci/run)');
    throw new Error(`kubectl kustomize ${dir} failed: ${e.stderr ?? e.message}`);
  }
  return loadYaml(out);
}

export function readComposeFile(): Doc {
  return loadYaml(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'))[0];
}

/** Pod templates of a rendered overlay's workloads (Deployments and Jobs). */
export function podTemplates(docs: Doc[]): Array<{ kind: string; name: string; spec: Doc; metadata: Doc }> {
  return docs
    .filter((d) => d.kind === 'Deployment' || d.kind === 'Job')
    .map((d) => ({ kind: d.kind, name: d.metadata.name, spec: d.spec.template.spec, metadata: d.spec.template.metadata }));
}

/** Env var names a container receives, with the literal values set inline (undefined for references). */
export function containerEnv(docs: Doc[], container: Doc): Map<string, string | undefined> {
  const env = new Map<string, string | undefined>();
  for (const source of container.envFrom ?? []) {
    const ref = source.configMapRef ?? source.secretRef;
    const kind = source.configMapRef ? 'ConfigMap' : 'Secret';
    const object = docs.find((d) => d.kind === kind && d.metadata.name === ref.name);
    if (!object) throw new Error(`${container.name}: envFrom ${kind} ${ref.name} is not in the rendered overlay`);
    for (const key of Object.keys({ ...object.data, ...object.stringData })) env.set(key, undefined);
  }
  for (const entry of container.env ?? []) env.set(entry.name, entry.value);
  return env;
}
