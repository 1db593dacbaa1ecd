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
    expect(out / (keys.length * windows.length)).toBeGreaterThan(0.05);
    expect(out / (keys.length * windows.length)).toBeLessThan(0.15);
  });

  test('the handler fails every attempt of a key in outage, whatever the attempt', async () => {
    const registry = createHandlerRegistry();
    createChaosModule({ ...options, keyOutageFraction: 1 }).register(registry);
    const handler = registry.get('PaymentCaptured')!;
    const payload = chaosPayloadSchema.parse({ seq: 1, key: 'payments-1' });
    const event = { eventId: '0190f5c0-0000-7000-8000-000000000001', type: 'PaymentCaptured', stream: 'stream:chaos:payments', partitionKey: 'payments-1', payload, headers: {}, createdAt: '', outboxId: '1', entryId: '1-0' };
    for (const attempt of [1, 2, 7]) {
      await expect(handler.handle(event, { attempt } as never)).rejects.toBeInstanceOf(ChaosKeyOutage);
    }
  });
});
