import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../src';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, logger: createLogger({ name: 'test', destination }) };
}

describe('logger never shows secrets', () => {
  const url = 'postgresql://petcover:s3cr3t-pw@db.internal:5432/petcover';

  test('masks a password in a URL anywhere in the line', () => {
    const { lines, logger } = capture();
    logger.info({ databaseUrl: url, nested: { urls: [`redis://:r3dis-pw@cache:6379/0`] } }, `connecting to ${url}`);
    logger.error({ err: new Error(`connect ECONNREFUSED ${url}`) }, 'failed');
    const text = lines.join('');
    expect(text).not.toContain('s3cr3t-pw');
    expect(text).not.toContain('r3dis-pw');
    expect(text).toContain('postgresql://petcover:***@db.internal:5432/petcover');
  });

  test('redacts secret-named keys', () => {
    const { lines, logger } = capture();
    logger.info({ password: 'hunter2', headers: { authorization: 'Bearer abc' } }, 'login');
    expect(lines.join('')).not.toMatch(/hunter2|Bearer abc/);
  });
});

/** Keys of a JSON object line in order, duplicates included (JSON.parse would hide them). */
function keysOf(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  const pattern = /"((?:[^"\\]|\\.)*)"\s*:|[{}]/g;
  for (const match of line.matchAll(pattern)) {
    if (match[0] === '{') depth += 1;
    else if (match[0] === '}') depth -= 1;
    else if (depth === 1) keys.push(match[1] as string);
  }
  return keys;
}

describe('log lines', () => {
  test('never repeat a key a child logger already binds', () => {
    const { lines, logger } = capture();
    const child = logger.child({ group: 'billing', ownerId: 'host-1' }).child({ eventId: 'e-1' });
    child.info({ group: 'billing', eventId: 'e-1', petId: 'p-1' }, 'pet enrolled');
    const keys = keysOf(lines[0] as string);
    expect(keys.filter((k) => k === 'group')).toHaveLength(1);
    expect(keys.filter((k) => k === 'eventId')).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ group: 'billing', eventId: 'e-1', petId: 'p-1', msg: 'pet enrolled' });
  });

  test('are JSON when not written to a terminal', () => {
    const { lines, logger } = capture();
    logger.info('hello');
    expect(JSON.parse(lines[0] as string)).toMatchObject({ msg: 'hello', name: 'test' });
  });

  test('are readable (pino-pretty) when stdout is a terminal, unless LOG_FORMAT says json', () => {
    const built = path.join(__dirname, '..', 'dist', 'index.js');
    if (!fs.existsSync(built)) throw new Error(`build service-kit first (pnpm build): missing ${built}`);
    // `script` (util-linux) runs the child with a pseudo-terminal as its stdout, as a developer's shell would.
    const onTerminal = (format?: string) =>
      execFileSync('script', ['-qec', `${process.execPath} -e 'require(${JSON.stringify(built)}).createLogger({ name: "tty", format: ${JSON.stringify(format)} }).info({ petId: "p-1" }, "hello")'`, '/dev/null'], {
        encoding: 'utf8',
        // Plain text to compare (pino-pretty colours a terminal unless NO_COLOR is set).
        env: { ...process.env, NO_COLOR: '1' },
      });
    const pretty = onTerminal();
    expect(pretty).toMatch(/^\[\d\d:\d\d:\d\d\] INFO \(tty\): hello/);
    expect(pretty).toContain('petId: "p-1"');
    expect(() => JSON.parse(pretty)).toThrow();
    expect(JSON.parse(onTerminal('json'))).toMatchObject({ msg: 'hello', name: 'tty', petId: 'p-1' });
  });
});
