/**
 * The last-resort handlers in a real Node process (jest intercepts
 * unhandled rejections of its own tests, so a child process is the honest
 * check): a stray rejection is logged and the process lives on; an uncaught
 * exception is logged and ends it with exit code 1.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

const DIST = path.join(__dirname, '..', 'dist', 'index.js');

const SCRIPT = `
const { createLogger, installLastResortHandlers } = require(${JSON.stringify(DIST)});
installLastResortHandlers(createLogger({ name: 'last-resort-test' }));
const fail = () => Promise.reject(new Error('connection terminated: postgresql://u:pw-secret@db/petcover'));
fail();
fail(); // the same message again: counted, not logged twice
setImmediate(() => setImmediate(() => {
  console.log(JSON.stringify({ alive: true }));
  if (process.argv[1] === 'throw') setImmediate(() => { throw new Error('boom'); });
}));
`;

function run(mode: 'reject' | 'throw'): Promise<{ code: number | null; lines: Array<Record<string, unknown>> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', SCRIPT, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += String(chunk)));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, lines: out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) }));
  });
}

describe('installLastResortHandlers', () => {
  test('an unhandled rejection is logged once (masked) and the process goes on', async () => {
    const { code, lines } = await run('reject');
    expect(code).toBe(0);
    const logged = lines.filter((l) => l.msg !== undefined);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 50, repeatedSinceLastLog: 0 });
    expect(String(logged[0]!.msg)).toContain('unhandled promise rejection');
    expect(JSON.stringify(logged[0])).toContain('postgresql://u:***@db/petcover');
    expect(JSON.stringify(lines)).not.toContain('pw-secret');
    expect(lines).toContainEqual({ alive: true });
  });

  test('an uncaught exception is logged as fatal and exits 1', async () => {
    const { code, lines } = await run('throw');
    expect(code).toBe(1);
    expect(lines).toContainEqual(expect.objectContaining({ level: 60, msg: expect.stringContaining('uncaught exception'), origin: 'uncaughtException' }));
  });
});
