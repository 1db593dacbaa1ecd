/**
 * infra/k8s as `kubectl apply -k` sends it: every overlay renders, every
 * document validates against the Kubernetes API schemas, every pod meets Pod
 * Security "restricted", env names are ones the app's envSchema reads, probes
 * hit /readyz and /healthz on the port the app listens on, the base ships no
 * Secret, production documents the Secret it expects with every key.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  APPS,
  containerEnv,
  defaultPort,
  envNamesOf,
  MIGRATE_COMMAND,
  MIGRATE_ENV,
  OVERLAYS,
  podTemplates,
  renderOverlay,
  ROOT,
  type Doc,
  type Overlay,
} from './apps';
import { restrictedViolations } from './pod-security';

const SECRET_NAME = /(PASSWORD|SECRET|API_KEY|TOKEN)$|^DATABASE_URL$/;
const URL_WITH_PASSWORD = /:\/\/[^/:@\s]*:([^@\s]+)@/;
/** Seconds the api's preStop hook pauses before SIGTERM. */
const PRESTOP_SECONDS = 5;

const rendered = Object.fromEntries(OVERLAYS.map((o) => [o, renderOverlay(o)])) as Record<Overlay, Doc[]>;
const find = (docs: Doc[], kind: string, name?: string) => docs.filter((d) => d.kind === kind && (!name || d.metadata?.name === name));

/** secretKeyRef keys of every container of an overlay: Secret name → keys. */
function secretKeyRefs(docs: Doc[]): Map<string, Set<string>> {
  const refs = new Map<string, Set<string>>();
  for (const { spec } of podTemplates(docs)) {
    for (const c of spec.containers) {
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) refs.set(ref.name, (refs.get(ref.name) ?? new Set()).add(ref.key));
      }
    }
  }
  return refs;
}

describe.each(OVERLAYS)('overlay %s', (overlay) => {
  const docs = rendered[overlay];

  test('every document validates against the Kubernetes API schemas (kubernetes-models)', () => {
    const out = execFileSync(process.execPath, [path.join(__dirname, 'k8s-schemas.mjs')], { input: JSON.stringify(docs), encoding: 'utf8', cwd: __dirname });
    const results: Array<{ kind: string; name: string; error: string | null }> = JSON.parse(out);
    expect(results).toHaveLength(docs.length);
    expect(results.filter((r) => r.error)).toEqual([]);
    expect(new Set(results.map((r) => r.kind))).toEqual(
      new Set(['Namespace', 'ConfigMap', 'PersistentVolumeClaim', 'Service', 'Deployment', 'PodDisruptionBudget', 'Job', ...(overlay === 'dev' ? ['Secret'] : [])]),
    );
  });

  test('every pod meets Pod Security "restricted", read-only root filesystem, no service account token; the namespace enforces it', () => {
    const pods = podTemplates(docs);
    expect(pods.map((p) => p.name).sort()).toEqual(['api', 'events-consumer', 'events-publisher', 'petcover-migrate']);
    for (const pod of pods) {
      expect([pod.name, restrictedViolations(pod.spec)]).toEqual([pod.name, []]);
      expect([pod.name, pod.spec.automountServiceAccountToken]).toEqual([pod.name, false]);
      for (const c of pod.spec.containers) expect([pod.name, c.securityContext.readOnlyRootFilesystem]).toEqual([pod.name, true]);
    }
    const [namespace] = find(docs, 'Namespace');
    expect(namespace.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    expect(find(docs, 'Deployment').every((d) => d.metadata.namespace === namespace.metadata.name)).toBe(true);
  });

  test('writable volumes only where needed: the api documents volume, shared by its replicas', () => {
    for (const pod of podTemplates(docs)) {
      const mounts = pod.spec.containers.flatMap((c: Doc) => c.volumeMounts ?? []);
      if (pod.name !== 'api') {
        expect([pod.name, mounts, pod.spec.volumes ?? []]).toEqual([pod.name, [], []]);
        continue;
      }
      const [container] = pod.spec.containers;
      const documentsDir = containerEnv(docs, container).get('DOCUMENT_STORE_DIR');
      expect(mounts).toEqual([{ name: 'documents', mountPath: documentsDir }]);
      const [volume] = pod.spec.volumes;
      const [claim] = find(docs, 'PersistentVolumeClaim', volume.persistentVolumeClaim.claimName);
      expect(claim).toBeDefined();
      expect(pod.spec.securityContext.fsGroup).toBe(pod.spec.securityContext.runAsGroup);
      const [deployment] = find(docs, 'Deployment', 'api');
      // Replicas on several nodes need ReadWriteMany; the dev overlay is one node.
      if (deployment.spec.replicas > 1) expect(claim.spec.accessModes).toEqual([overlay === 'production' ? 'ReadWriteMany' : 'ReadWriteOnce']);
    }
  });

  test('secrets: only from petcover-secrets; no password or secret value inline', () => {
    const secretNames = [...secretKeyRefs(docs).keys()];
    expect(secretNames).toHaveLength(1);
    for (const { name, spec } of podTemplates(docs)) {
      for (const c of spec.containers) {
        for (const e of c.env ?? []) {
          if (SECRET_NAME.test(e.name)) expect([name, e.name, e.valueFrom?.secretKeyRef?.name]).toEqual([name, e.name, secretNames[0]]);
        }
      }
    }
    for (const doc of docs) {
      if (doc.kind === 'Secret') continue;
      expect([doc.kind, doc.metadata.name, URL_WITH_PASSWORD.test(JSON.stringify(doc))]).toEqual([doc.kind, doc.metadata.name, false]);
    }
  });

  test('the migration Job runs the migrate command with DATABASE_URL only, through the image entrypoint', () => {
    const [pod] = podTemplates(docs).filter((p) => p.name === 'petcover-migrate');
    const [container] = pod!.spec.containers;
    expect(container.command).toBeUndefined();
    expect(container.args).toEqual(MIGRATE_COMMAND);
    expect([...containerEnv(docs, container).keys()]).toEqual(MIGRATE_ENV);
    expect(pod!.spec.restartPolicy).toBe('Never');
  });

  describe.each(APPS)('$dir', (app) => {
    const [deployment] = find(docs, 'Deployment', app.target);
    const spec = deployment.spec.template.spec;
    const [container] = spec.containers;
    const env = containerEnv(docs, container);
    const listenPort = Number(env.get(app.portVar) ?? defaultPort(app));

    test('env names are read by its envSchema; DATABASE_URL and REDIS_URL set', () => {
      const names = envNamesOf(app);
      for (const name of env.keys()) expect([app.dir, name, names.has(name)]).toEqual([app.dir, name, true]);
      expect(env.has('DATABASE_URL') && env.has('REDIS_URL')).toBe(true);
    });

    test('probes: /readyz and /healthz on the port the app listens on; metrics annotations; image', () => {
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
      expect(container.image).toMatch(new RegExp(`^petcover/${app.target}:`));
    });

    test('replicas, PodDisruptionBudget, grace above the drain (and the api preStop), resources', () => {
      expect(deployment.spec.replicas).toBe(2);
      const labels = deployment.spec.selector.matchLabels;
      expect(deployment.spec.template.metadata.labels).toMatchObject(labels);
      const pdbs = find(docs, 'PodDisruptionBudget').filter((p) => JSON.stringify(p.spec.selector.matchLabels) === JSON.stringify(labels));
      expect(pdbs).toHaveLength(1);
      // maxUnavailable, not minAvailable: scaled to one replica, a drain still proceeds.
      expect(pdbs[0].spec).toMatchObject({ maxUnavailable: 1 });
      const preStop = container.lifecycle?.preStop;
      if (app.dir === 'api') expect(preStop).toEqual({ exec: { command: ['sleep', String(PRESTOP_SECONDS)] } });
      else expect(preStop).toBeUndefined();
      expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(app.drainSeconds + (preStop ? PRESTOP_SECONDS : 0));
      expect(container.resources.requests).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
      expect(container.resources.limits).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
    });
  });
});

describe('Secrets', () => {
  test('the base ships no Secret', () => {
    expect(find(renderOverlay('base'), 'Secret')).toEqual([]);
  });

  test('dev generates petcover-secrets with every referenced key, development values only', () => {
    const docs = rendered.dev;
    const secrets = find(docs, 'Secret');
    expect(secrets).toHaveLength(1);
    const [secret] = secrets;
    const refs = secretKeyRefs(docs);
    expect([...refs.keys()]).toEqual([secret.metadata.name]);
    expect(secret.metadata.name).toMatch(/^petcover-secrets-[a-z0-9]+$/);
    const values = Object.fromEntries(Object.entries<string>(secret.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
    expect(Object.keys(values).sort()).toEqual([...refs.get(secret.metadata.name)!].sort());
    for (const [key, value] of Object.entries(values)) {
      const password = URL_WITH_PASSWORD.exec(value)?.[1];
      if (password || (SECRET_NAME.test(key) && !value.includes('://'))) expect([key, password ?? value]).toEqual([key, expect.stringContaining('dev-only')]);
    }
    // Published values: the overlay runs the apps outside strict mode, which would refuse them.
    expect(find(docs, 'ConfigMap', 'petcover-config')[0].data.NODE_ENV).toBe('development');
  });

  test('production ships no Secret and its README names every key its pods read, with a create command', () => {
    const docs = rendered.production;
    expect(find(docs, 'Secret')).toEqual([]);
    expect(find(docs, 'ConfigMap', 'petcover-config')[0].data.NODE_ENV).toBe('production');
    const readme = fs.readFileSync(path.join(ROOT, 'infra', 'k8s', 'overlays', 'production', 'README.md'), 'utf8');
    const refs = secretKeyRefs(docs);
    expect([...refs.keys()]).toEqual(['petcover-secrets']);
    const create = /kubectl -n (\S+) create secret generic (\S+)((?:[^\n]*\\\n)*[^\n]*)/.exec(readme);
    expect(create).not.toBeNull();
    expect(create![1]).toBe(find(docs, 'Namespace')[0].metadata.name);
    expect(create![2]).toBe('petcover-secrets');
    const documented = [...create![3]!.matchAll(/--from-literal=([A-Z_]+)=/g)].map((m) => m[1]!);
    const tableKeys = [...readme.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]!);
    expect(tableKeys).toEqual(documented);
    for (const key of refs.get('petcover-secrets')!) expect([key, documented.includes(key)]).toEqual([key, true]);
    // Each documented key is a setting some app reads (none is stale).
    const readable = new Set(APPS.flatMap((a) => [...envNamesOf(a)]));
    for (const key of documented) expect([key, readable.has(key)]).toEqual([key, true]);
  });
});

describe('the Pod Security checker itself', () => {
  test('names each violation of a pod spec that ignores the restricted profile', () => {
    const violations = restrictedViolations({
      hostNetwork: true,
      securityContext: { seccompProfile: { type: 'Unconfined' } },
      volumes: [{ name: 'h', hostPath: { path: '/' } }],
      containers: [{ name: 'c', ports: [{ containerPort: 80, hostPort: 80 }], securityContext: { privileged: true, capabilities: { add: ['SYS_ADMIN'] } } }],
    });
    expect(violations).toEqual([
      'host namespaces (hostNetwork/hostPID/hostIPC)',
      'volume h: hostPath',
      'volume h: type hostPath is not allowed',
      'pod: seccompProfile.type Unconfined',
      'container c: privileged',
      'container c: hostPort 80',
      'container c: allowPrivilegeEscalation must be false',
      'container c: runAsNonRoot must be true',
      'container c: seccompProfile must be RuntimeDefault or Localhost',
      'container c: capabilities.drop must include ALL',
      'container c: capabilities.add SYS_ADMIN',
    ]);
  });
});
