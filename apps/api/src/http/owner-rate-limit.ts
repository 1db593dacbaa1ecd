/**
 * Per-owner rate limit of writes (add pet, choose plan, confirm), counted in
 * Redis by `rate-limiter-flexible` so every replica shares one budget. When
 * Redis is unreachable the limiter falls back to an in-process budget of
 * the same size (its insurance limiter): owners keep being served and are
 * still limited, per replica, instead of failing on a cache outage.
 */
import type { RequestHandler } from 'express';
import type { RedisClient } from '@petcover/service-kit';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { ownerOf } from './owner-auth';

/** A person going through the wizard writes a handful of times a minute; scripts hammering it do not get far. */
export const DEFAULT_OWNER_WRITES_PER_MINUTE = 30;

export interface OwnerRateLimitOptions {
  redis: RedisClient | undefined;
  writesPerMinute: number;
  /** Redis key prefix; tests isolate themselves with their own. */
  keyPrefix?: string;
}

export function ownerWriteRateLimit(options: OwnerRateLimitOptions): RequestHandler {
  const budget = { points: options.writesPerMinute, duration: 60 };
  const memory = new RateLimiterMemory({ ...budget, keyPrefix: options.keyPrefix ?? 'petcover:rate:owner-writes' });
  const limiter = options.redis
    ? new RateLimiterRedis({
        ...budget,
        storeClient: options.redis,
        keyPrefix: options.keyPrefix ?? 'petcover:rate:owner-writes',
        insuranceLimiter: memory,
      })
    : memory;
  return async (_req, res, next) => {
    try {
      await limiter.consume(ownerOf(res));
      next();
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) return next(rejection);
      const retryAfterSeconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      res
        .status(429)
        .set('retry-after', String(retryAfterSeconds))
        .json({ error: 'rate_limited', message: `too many changes for this owner; retry in ${retryAfterSeconds} s` });
    }
  };
}
