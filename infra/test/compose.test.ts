/**
 * docker-compose.yml works as the README says: it is valid Compose (the
 * compose-spec JSON schema that `docker compose` checks against), its
 * `postgres` and `redis` agree with the URLs the README gives for
 * `docker compose up -d postgres redis`, and the whole-system services give
 * each app the env names its Kubernetes container gets.
 */
import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { DEFAULT_REDIS_URL } from '@petcover/service-kit';
import { APPS, containerEnv, defaultPort, envNamesOf, MIGRATE_COMMAND, MIGRATE_ENV, readComposeFile, renderOverlay, ROOT, type Doc } from './apps';

const compose = readComposeFile();
const production = renderOverlay('production');
const URL_WITH_PASSWORD = /:\/\/[^/:@\s]*:([^@\s]+)@/;
const SECRET_NAME = /(PASSWORD|SECRET|API_KEY|TOKEN)$/;

test('valid against the Compose Specification schema', () => {
  // Draft-07, ajv's own dialect; the file names it by an https URI ajv does
  // not register, so the $schema line is left out.
  const { $schema: _dialect, ...schema } = JSON.parse(fs.readFileSync(path.join(ROOT, 'infra', 'schemas', 'compose-spec.json'), 'utf8'));
  expect(_dialect).toBe('https://json-schema.org/draft-07/schema');
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(schema);
  expect(validate(compose) ? [] : validate.errors).toEqual([]);
  // The schema does catch mistakes (a typo'd key, a wrong type).
  expect(validate({ services: { api: { image: 'x', restart_policy: 'always' } } })).toBe(false);
  expect(validate({ services: { api: { image: 'x', ports: 'not-a-list' } } })).toBe(false);
});

describe('`docker compose up -d postgres redis` and the README', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

  test('the README sets DATABASE_URL right after the command, and it reaches the compose database', () => {
    const match = /docker compose up -d postgres redis\n[#\s]*export DATABASE_URL=(\S+)/.exec(readme);
    expect(match).not.toBeNull();
    const url = new URL(match![1]!);
    const postgres = compose.services.postgres;
    // Trust auth: the URL carries no password, and none is needed.
    expect(postgres.environment.POSTGRES_HOST_AUTH_METHOD).toBe('trust');
    expect(url.password).toBe('');
    expect(url.username).toBe(postgres.environment.POSTGRES_USER);
    expect(url.pathname).toBe(`/${postgres.environment.POSTGRES_DB}`);
    expect(['localhost', '127.0.0.1']).toContain(url.hostname);
    expect(postgres.ports).toEqual([`127.0.0.1:${url.port || 5432}:5432`]);
  });

  test("REDIS_URL's default reaches the compose Redis", () => {
    const url = new URL(DEFAULT_REDIS_URL);
    expect(['localhost', '127.0.0.1']).toContain(url.hostname);
    expect(compose.services.redis.ports).toEqual([`127.0.0.1:${url.port || 6379}:6379`]);
  });
});

describe('whole system (`docker compose up -d --build`)', () => {
  test('the migrate service runs the Job command with DATABASE_URL only, once', () => {
    const service = compose.services.migrate;
    expect(service.command).toEqual(MIGRATE_COMMAND);
    expect(Object.keys(service.environment)).toEqual(MIGRATE_ENV);
    expect(service.restart).toBe('no');
    expect(service.build).toEqual({ context: '.', target: 'api' });
  });

  test('secrets come from the environment, with local-development defaults marked dev-only; no password in a URL', () => {
    for (const [name, service] of Object.entries<Doc>(compose.services)) {
      for (const [key, value] of Object.entries<string>(service.environment ?? {})) {
        expect([name, key, URL_WITH_PASSWORD.test(String(value))]).toEqual([name, key, false]);
        if (SECRET_NAME.test(key)) expect([name, key, value]).toEqual([name, key, expect.stringMatching(/^\$\{[A-Z_]+:-[^}]*dev-only[^}]*\}$/)]);
      }
    }
  });

  describe.each(APPS)('$dir', (app) => {
    const service = compose.services[app.composeService];
    const env = service.environment as Record<string, string>;
    const [deployment] = production.filter((d: Doc) => d.kind === 'Deployment' && d.metadata.name === app.target);
    const k8sEnv = containerEnv(production, deployment.spec.template.spec.containers[0]);

    test('the same env names as its Kubernetes container, each read by its envSchema', () => {
      expect(Object.keys(env).sort()).toEqual([...k8sEnv.keys()].sort());
      const names = envNamesOf(app);
      for (const name of Object.keys(env)) expect([app.dir, name, names.has(name)]).toEqual([app.dir, name, true]);
    });

    test('built from its Dockerfile stage; healthcheck on /readyz at the app port; ordering; grace', () => {
      expect(service.build).toEqual({ context: '.', target: app.target });
      expect(service.image).toBe(`petcover/${app.target}:dev`);
      const listenPort = Number(env[app.portVar] ?? defaultPort(app));
      expect(listenPort).toBe(Number(k8sEnv.get(app.portVar) ?? defaultPort(app)));
      expect(service.ports).toEqual([`${listenPort}:${listenPort}`]);
      expect(service.healthcheck.test.join(' ')).toContain(`http://127.0.0.1:${listenPort}/readyz`);
      expect(service.depends_on).toMatchObject({
        migrate: { condition: 'service_completed_successfully' },
        postgres: { condition: 'service_healthy' },
        redis: { condition: 'service_healthy' },
      });
      expect(Number.parseInt(service.stop_grace_period, 10)).toBeGreaterThan(app.drainSeconds);
    });
  });

  test("the api's documents live on a named volume at DOCUMENT_STORE_DIR", () => {
    const api = compose.services.api;
    expect(api.volumes).toEqual([`documents:${api.environment.DOCUMENT_STORE_DIR}`]);
    expect(Object.keys(compose.volumes)).toContain('documents');
  });
});
