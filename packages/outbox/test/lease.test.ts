import { acquireLease, forceReleaseLease } from '../src';
import { consumerRole, ImpossibleLeaseError, impossibleLeaseReason, makeOwnerId, releaseLease } from '../src/lease/lease';
import { createTestDatabase, uniqueStreamName, type TestDatabase } from '../src/testing';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(async () => testDb.drop());

const expire = (stream: string) =>
  testDb.sql`UPDATE events.stream_lease SET lease_until = now() - interval '1 second' WHERE stream_name = ${stream}`;

describe('acquireLease', () => {
  test('one statement inserts, renews for the owner and refuses others while alive', async () => {
    const streamName = uniqueStreamName();
    const a = { streamName, role: 'publisher' as const, ownerId: makeOwnerId(), ttlMs: 10_000 };
    const first = await acquireLease(testDb.sql, a);
    expect(first).toMatchObject({ acquired: true, ownerId: a.ownerId });
    expect(first!.leaseUntil.getTime()).toBeGreaterThan(Date.now());

    const renewed = await acquireLease(testDb.sql, a);
    expect(renewed).toMatchObject({ acquired: false, fencingToken: first!.fencingToken });

    expect(await acquireLease(testDb.sql, { ...a, ownerId: 'other:1:abc' })).toBeNull();
  });

  test('an expired lease is taken over and the fencing token grows', async () => {
    const streamName = uniqueStreamName();
    const a = { streamName, role: 'publisher' as const, ownerId: 'host-a:1:aaa', ttlMs: 10_000 };
    const first = await acquireLease(testDb.sql, a);
    await expire(streamName);
    const taken = await acquireLease(testDb.sql, { ...a, ownerId: 'host-b:2:bbb' });
    expect(taken).toMatchObject({ acquired: true, ownerId: 'host-b:2:bbb' });
    expect(BigInt(taken!.fencingToken)).toBeGreaterThan(BigInt(first!.fencingToken));
    // The old owner cannot renew what it lost.
    expect(await acquireLease(testDb.sql, a)).toBeNull();
  });

  test('the token still grows after the row is deleted by hand (runbook DELETE)', async () => {
    const streamName = uniqueStreamName();
    const a = { streamName, role: 'publisher' as const, ownerId: 'host-a:1:aaa', ttlMs: 10_000 };
    const first = await acquireLease(testDb.sql, a);
    await testDb.sql`DELETE FROM events.stream_lease WHERE stream_name = ${streamName} AND role = 'publisher'`;
    const again = await acquireLease(testDb.sql, { ...a, ownerId: 'host-b:2:bbb' });
    expect(BigInt(again!.fencingToken)).toBeGreaterThan(BigInt(first!.fencingToken));
  });

  test('roles are independent leases on the same stream', async () => {
    const streamName = uniqueStreamName();
    const ttlMs = 10_000;
    expect(await acquireLease(testDb.sql, { streamName, role: 'publisher', ownerId: 'a:1:a', ttlMs })).not.toBeNull();
    expect(await acquireLease(testDb.sql, { streamName, role: consumerRole('g1'), ownerId: 'b:1:b', ttlMs })).not.toBeNull();
    expect(await acquireLease(testDb.sql, { streamName, role: consumerRole('g2'), ownerId: 'c:1:c', ttlMs })).not.toBeNull();
  });

  test('release frees the lease at once, only for its owner; force release for operators', async () => {
    const streamName = uniqueStreamName();
    const a = { streamName, role: 'publisher' as const, ownerId: 'a:1:a', ttlMs: 60_000 };
    await acquireLease(testDb.sql, a);
    expect(await releaseLease(testDb.sql, { ...a, ownerId: 'intruder:1:x' })).toBe(false);
    expect(await releaseLease(testDb.sql, a)).toBe(true);
    expect(await releaseLease(testDb.sql, a)).toBe(false);
    expect(await acquireLease(testDb.sql, { ...a, ownerId: 'b:1:b' })).not.toBeNull();
    expect(await forceReleaseLease(testDb.sql, { streamName, role: 'publisher' })).toBe(true);
  });

  test('racing replicas: exactly one wins', async () => {
    const streamName = uniqueStreamName();
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) => acquireLease(testDb.sql, { streamName, role: 'publisher', ownerId: `r:${i}:x`, ttlMs: 10_000 })),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  test('makeOwnerId is host:pid:random', () => {
    expect(makeOwnerId()).toMatch(new RegExp(`^[^:]+:${process.pid}:[0-9a-f]{6}$`));
  });

  test('a row edited into an impossible state is an ImpossibleLeaseError naming the fix, not a database error; release heals it', async () => {
    const streamName = uniqueStreamName();
    const a = { streamName, role: 'publisher' as const, ownerId: 'host-a:1:aaa', ttlMs: 10_000 };
    const b = { ...a, ownerId: 'host-b:2:bbb' };
    await acquireLease(testDb.sql, a);

    // Token at bigint max, expired: the takeover's token + 1 overflows (Postgres 22003).
    await testDb.sql`UPDATE events.stream_lease SET fencing_token = 9223372036854775807, lease_until = now() - interval '1 second' WHERE stream_name = ${streamName}`;
    const overflow = await acquireLease(testDb.sql, b).catch((error: unknown) => error);
    expect(overflow).toBeInstanceOf(ImpossibleLeaseError);
    expect(overflow).toMatchObject({
      streamName,
      role: 'publisher',
      reason: expect.stringContaining('bigint maximum'),
      fix: `events lease release --stream ${streamName} --role publisher`,
    });
    // Its holder renewing it is told the same (it would never be taken over).
    await testDb.sql`UPDATE events.stream_lease SET lease_until = now() + interval '10 seconds' WHERE stream_name = ${streamName}`;
    await expect(acquireLease(testDb.sql, a)).rejects.toBeInstanceOf(ImpossibleLeaseError);

    // A negative token held by its owner (Redis would fence every append with it).
    await testDb.sql`UPDATE events.stream_lease SET fencing_token = -5 WHERE stream_name = ${streamName}`;
    await expect(acquireLease(testDb.sql, a)).rejects.toMatchObject({ reason: expect.stringContaining('fencing_token -5 is not positive') });

    expect(await forceReleaseLease(testDb.sql, { streamName, role: 'publisher' })).toBe(true);
    expect(await acquireLease(testDb.sql, b)).toMatchObject({ acquired: true, ownerId: b.ownerId });
  });

  test('impossibleLeaseReason: blank owner, token out of range or not a number; sane rows pass', () => {
    expect(impossibleLeaseReason({ ownerId: ' ', fencingToken: '1' })).toBe('its owner_id is empty');
    expect(impossibleLeaseReason({ ownerId: 'h:1:a', fencingToken: '0' })).toContain('not positive');
    expect(impossibleLeaseReason({ ownerId: 'h:1:a', fencingToken: '9223372036854775807' })).toContain('bigint maximum');
    expect(impossibleLeaseReason({ ownerId: 'h:1:a', fencingToken: 'x' })).toContain('not a number');
    expect(impossibleLeaseReason({ ownerId: 'h:1:a', fencingToken: String(Date.now()) })).toBeNull();
  });
});
