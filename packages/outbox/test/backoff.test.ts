import { Writable } from 'node:stream';
import pino from 'pino';
import { backoffDelay, DEFAULT_BACKOFF, FailureLog, sleep, Wakeup } from '../src/backoff';

describe('backoffDelay', () => {
  test('doubles per failure, stays within [half, full] of the step and never exceeds the cap', () => {
    const policy = { baseDelayMs: 100, maxDelayMs: 1_000 };
    for (let i = 0; i < 200; i++) {
      const first = backoffDelay(1, policy);
      expect(first).toBeGreaterThanOrEqual(50);
      expect(first).toBeLessThanOrEqual(100);
      const third = backoffDelay(3, policy);
      expect(third).toBeGreaterThanOrEqual(200);
      expect(third).toBeLessThanOrEqual(400);
      expect(backoffDelay(20, policy)).toBeLessThanOrEqual(1_000);
      expect(backoffDelay(10_000)).toBeLessThanOrEqual(DEFAULT_BACKOFF.maxDelayMs);
    }
  });
});

describe('sleep', () => {
  test('resolves true when the time has passed', async () => {
    await expect(sleep(1, new AbortController().signal)).resolves.toBe(true);
  });

  test('resolves false at once when aborted before or during the sleep, never rejects', async () => {
    const before = new AbortController();
    before.abort();
    await expect(sleep(60_000, before.signal)).resolves.toBe(false);
    const during = new AbortController();
    const sleeping = sleep(60_000, during.signal);
    during.abort();
    await expect(sleeping).resolves.toBe(false);
  });
});

describe('Wakeup', () => {
  test('a ring wakes the waiter, and a ring while nobody waits is remembered once', async () => {
    const signal = new AbortController().signal;
    const wakeup = new Wakeup();
    const waiting = wakeup.wait(60_000, signal);
    wakeup.ring();
    await waiting;
    wakeup.ring();
    await wakeup.wait(60_000, signal); // remembered: returns at once
    let woke = false;
    const next = wakeup.wait(60_000, signal).then(() => (woke = true));
    await sleep(20, signal);
    expect(woke).toBe(false); // the remembered ring was used up
    wakeup.ring();
    await next;
  });
});

describe('FailureLog', () => {
  test('logs a repeating failure once, a new reason again, and the recovery once', () => {
    const lines: Array<{ msg: string }> = [];
    const logger = pino(new Writable({ write: (chunk, _e, done) => { lines.push(JSON.parse(String(chunk))); done(); } }));
    const health = new FailureLog(logger, { loop: 'drain' });
    health.failed(new Error('ECONNREFUSED'), 'drain');
    health.failed(new Error('ECONNREFUSED'), 'drain');
    health.failed(new Error('57P01'), 'drain');
    expect(health.failing).toBe(true);
    health.succeeded('drain');
    health.succeeded('drain');
    expect(lines.map((l) => l.msg)).toEqual([
      'drain failed; retrying with backoff until it recovers',
      'drain failed; retrying with backoff until it recovers',
      'drain recovered',
    ]);
    expect(health.attempt).toBe(0);
  });
});
