/**
 * Key outages of the chaos handler (issue 19): a seeded fraction of (key,
 * 10 s window) pairs fail every attempt, the same in every process.
 */
import { createHandlerRegistry } from '@petcover/outbox';
import { chaosPayloadSchema } from '../src/chaos-streams';
import { ChaosKeyOutage, createChaosModule, inKeyOutage, KEY_OUTAGE_WINDOW_MS } from '../src/handler-module';

const options = { seed: 42, failFraction: 0, keyOutageFraction: 0.1 };

describe('key outages', () => {
  test('deterministic per key and window, off at fraction 0, about the fraction of windows', () => {
    const keys = Array.from({ length: 20 }, (_, i) => `orders-${i}`);
    const windows = Array.from({ length: 100 }, (_, i) => i * KEY_OUTAGE_WINDOW_MS + 1);
    let out = 0;
    for (const key of keys) {
      for (const at of windows) {
        const down = inKeyOutage(key, at, options);
        // The whole window agrees (another replica, a later attempt).
        expect(inKeyOutage(key, at + KEY_OUTAGE_WINDOW_MS - 2, options)).toBe(down);
        expect(inKeyOutage(key, at, { ...options, keyOutageFraction: 0 })).toBe(false);
        if (down) out++;
      }
    }
    // About the fraction, less the windows that follow an outage of their key.
    expect(out / (keys.length * windows.length)).toBeGreaterThan(0.05);
    expect(out / (keys.length * windows.length)).toBeLessThan(0.15);
  });

  test('an outage is one window: never two in a row for one key (back-to-back draws once outlasted the drain)', () => {
    const always = { ...options, keyOutageFraction: 1 };
    // Every window drawn down: only the first of a run would be, so none is (each follows a down draw).
    expect(inKeyOutage('orders-1', 5 * KEY_OUTAGE_WINDOW_MS, always)).toBe(false);
    for (const key of Array.from({ length: 50 }, (_, i) => `orders-${i}`)) {
      for (let w = 1; w < 200; w++) {
        expect(inKeyOutage(key, w * KEY_OUTAGE_WINDOW_MS, options) && inKeyOutage(key, (w + 1) * KEY_OUTAGE_WINDOW_MS, options)).toBe(false);
      }
    }
  });

  test('outages are over for good once the run says so (its producer stopped)', () => {
    const keys = Array.from({ length: 20 }, (_, i) => `orders-${i}`);
    const downAt = keys.flatMap((key) => Array.from({ length: 100 }, (_, w) => ({ key, at: w * KEY_OUTAGE_WINDOW_MS }))).filter(({ key, at }) => inKeyOutage(key, at, options));
    expect(downAt.length).toBeGreaterThan(0);
    for (const { key, at } of downAt) expect(inKeyOutage(key, at, { ...options, outagesOver: () => true })).toBe(false);
  });

  test('the handler fails every attempt of a key in outage, whatever the attempt', async () => {
    // A window in which payments-1 is down (the handler reads the clock).
    const downAt = Array.from({ length: 1_000 }, (_, w) => w * KEY_OUTAGE_WINDOW_MS).find((at) => inKeyOutage('payments-1', at, options))!;
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'setTimeout', 'setInterval', 'queueMicrotask'], now: downAt + 1 });
    const registry = createHandlerRegistry();
    createChaosModule(options).register(registry);
    const handler = registry.get('PaymentCaptured')!;
    const payload = chaosPayloadSchema.parse({ seq: 1, key: 'payments-1' });
    const event = { eventId: '0190f5c0-0000-7000-8000-000000000001', type: 'PaymentCaptured', stream: 'stream:chaos:payments', partitionKey: 'payments-1', payload, headers: {}, createdAt: '', outboxId: '1', entryId: '1-0' };
    for (const attempt of [1, 2, 7]) {
      await expect(handler.handle(event, { attempt } as never)).rejects.toBeInstanceOf(ChaosKeyOutage);
    }
    jest.useRealTimers();
  });
});
