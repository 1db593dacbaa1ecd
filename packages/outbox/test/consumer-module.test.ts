import { InvalidConsumerModuleError, resolveConsumerModule } from '../src';
import { backoffDelay } from '../src/consumer/backoff';

describe('resolveConsumerModule', () => {
  const module = { streams: [{ name: 'stream:billing:invoices', partitions: 2 }], register: () => undefined };

  test('takes the consumerModule export, else the default export', () => {
    expect(resolveConsumerModule({ consumerModule: module }, 'a.js')).toBe(module);
    expect(resolveConsumerModule({ default: module }, 'b.js')).toBe(module);
  });

  test('refuses a wrong shape naming the module and the problem', () => {
    const cases: [unknown, RegExp][] = [
      [{}, /m\.js is invalid: `register` is not a function/],
      [{ consumerModule: { ...module, streams: [] } }, /`streams` must be a non-empty array/],
      [{ consumerModule: { ...module, streams: [{ name: 'invoices' }] } }, /stream name "invoices" does not match/],
      [{ consumerModule: { ...module, streams: [{ name: 'stream:a:b', partitions: 0 }] } }, /partitions must be a positive integer/],
      [{ consumerModule: { ...module, migrations: 'all' } }, /`migrations` must be an array/],
    ];
    for (const [exported, message] of cases) {
      expect(() => resolveConsumerModule(exported, 'm.js')).toThrow(InvalidConsumerModuleError);
      expect(() => resolveConsumerModule(exported, 'm.js')).toThrow(message);
    }
  });
});

describe('backoffDelay', () => {
  test('doubles per failure, stays within [half, full] of the step and never exceeds the cap', () => {
    const policy = { baseDelayMs: 100, maxDelayMs: 1_000 };
    for (let i = 0; i < 200; i++) {
      const first = backoffDelay(policy, 1);
      expect(first).toBeGreaterThanOrEqual(50);
      expect(first).toBeLessThanOrEqual(100);
      const third = backoffDelay(policy, 3);
      expect(third).toBeGreaterThanOrEqual(200);
      expect(third).toBeLessThanOrEqual(400);
      expect(backoffDelay(policy, 20)).toBeLessThanOrEqual(1_000);
    }
  });
});
