/**
 * The admin key check shared by the admin JSON routes (`X-Admin-Key`) and
 * the console's sign-in.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** Hashing first makes both sides the same length, so the comparison leaks neither content nor length. */
export function sameKey(given: string, expected: string): boolean {
  return timingSafeEqual(createHash('sha256').update(given).digest(), createHash('sha256').update(expected).digest());
}
