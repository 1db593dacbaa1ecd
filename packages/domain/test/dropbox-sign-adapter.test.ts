/**
 * The Dropbox Sign adapter against a local server speaking the same protocol
 * (real HTTP on 127.0.0.1), and callback verification of what it sends.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { CallbackRejectedError, createDropboxSignProvider, SignatureDispatchError, verifySignatureCallback } from '@petcover/domain';
import { FAKE_SIGNING_URL_BASE, startFakeDropboxSign, type FakeDropboxSign } from '@petcover/domain/testing';

let fake: FakeDropboxSign;
beforeAll(async () => {
  fake = await startFakeDropboxSign();
});
afterAll(async () => {
  await fake?.close();
});

const dispatch = (approvalRequestId: string) => ({
  approvalRequestId,
  title: 'Enrollment of Bella',
  subject: 'Please sign',
  message: 'Thanks',
  signer: { name: 'Ann Owner', email: 'ann@example.com' },
  documents: [
    { fileName: 'insurance_application.pdf', pdf: Buffer.from('%PDF-1.3 one') },
    { fileName: 'terms_and_conditions.pdf', pdf: Buffer.from('%PDF-1.3 two') },
  ],
});

test('dispatch sends the documents, signer and our approval request id with basic auth', async () => {
  const provider = createDropboxSignProvider({ apiKey: fake.apiKey, baseUrl: fake.baseUrl });
  const approvalRequestId = randomUUID();
  const { providerRequestId } = await provider.dispatch(dispatch(approvalRequestId));
  const received = fake.requests.find((r) => r.signatureRequestId === providerRequestId);
  expect(received?.fields).toMatchObject({
    title: 'Enrollment of Bella',
    'signers[0][email_address]': 'ann@example.com',
    'signers[0][name]': 'Ann Owner',
    'metadata[approval_request_id]': approvalRequestId,
    test_mode: '1',
  });
  expect(received?.files.map((f) => [f.field, f.fileName, f.bytes.toString()])).toEqual([
    ['files[0]', 'insurance_application.pdf', '%PDF-1.3 one'],
    ['files[1]', 'terms_and_conditions.pdf', '%PDF-1.3 two'],
  ]);
});

test('dispatch reads signature_request.signing_url when it is an https URL; any other value is ignored', async () => {
  const provider = createDropboxSignProvider({ apiKey: fake.apiKey, baseUrl: fake.baseUrl });
  const sent = await provider.dispatch(dispatch(randomUUID()));
  expect(sent.signingUrl).toBe(`${FAKE_SIGNING_URL_BASE}${sent.providerRequestId}`);
  for (const value of ['http://app.hellosign.com/sign/abc', 'javascript:alert(1)', '/sign/abc', 'not a url', 42, null, undefined]) {
    fake.answerNextSigningUrlWith(value);
    const answer = await provider.dispatch(dispatch(randomUUID()));
    expect(answer.providerRequestId).toMatch(/^[0-9a-f]{40}$/);
    expect(answer.signingUrl).toBeUndefined();
  }
});

test('a wrong API key, a provider error and an unreachable provider are SignatureDispatchErrors', async () => {
  const wrongKey = createDropboxSignProvider({ apiKey: 'wrong', baseUrl: fake.baseUrl });
  await expect(wrongKey.dispatch(dispatch(randomUUID()))).rejects.toThrow(/HTTP 401.*Unauthorized api key/);

  fake.failNextWith(400, 'Invalid email address');
  const provider = createDropboxSignProvider({ apiKey: fake.apiKey, baseUrl: fake.baseUrl });
  await expect(provider.dispatch(dispatch(randomUUID()))).rejects.toMatchObject({ providerStatus: 400, message: expect.stringContaining('Invalid email address') });

  const unreachable = createDropboxSignProvider({ apiKey: fake.apiKey, baseUrl: 'http://127.0.0.1:9/v3', timeoutMs: 2000 });
  await expect(unreachable.dispatch(dispatch(randomUUID()))).rejects.toBeInstanceOf(SignatureDispatchError);
});

test('callbacks are verified by event_hash, as JSON or as the json form field', () => {
  const time = '1700000000';
  const hash = createHmac('sha256', fake.apiKey).update(`${time}signature_request_signed`).digest('hex');
  const event = { event: { event_time: time, event_type: 'signature_request_signed', event_hash: hash }, signature_request: { signature_request_id: 'abc' } };
  const now = new Date(Number(time) * 1000 + 10_000);
  expect(verifySignatureCallback(event, fake.apiKey, { now }).event.event_type).toBe('signature_request_signed');
  expect(verifySignatureCallback({ json: JSON.stringify(event) }, fake.apiKey, { now }).signature_request?.signature_request_id).toBe('abc');

  const tampered = { ...event, event: { ...event.event, event_type: 'signature_request_all_signed' } };
  expect(() => verifySignatureCallback(tampered, fake.apiKey, { now })).toThrow(expect.objectContaining({ status: 401 }));
  expect(() => verifySignatureCallback(event, 'another-key', { now })).toThrow(CallbackRejectedError);
  expect(() => verifySignatureCallback({ json: '{not json' }, fake.apiKey)).toThrow(expect.objectContaining({ status: 400 }));
  expect(() => verifySignatureCallback({ event: { event_type: 'x' } }, fake.apiKey)).toThrow(expect.objectContaining({ status: 400 }));
});

test('event_time outside the freshness window is refused (401) although the hash is valid; the window is configurable', () => {
  const signedAt = (t: number, type = 'signature_request_all_signed') => ({
    event: { event_time: String(t), event_type: type, event_hash: createHmac('sha256', fake.apiKey).update(`${t}${type}`).digest('hex') },
  });
  const now = new Date('2026-06-01T12:00:00Z');
  const nowSeconds = now.getTime() / 1000;
  expect(() => verifySignatureCallback(signedAt(nowSeconds - 3599), fake.apiKey, { now })).not.toThrow();
  expect(() => verifySignatureCallback(signedAt(nowSeconds - 3601), fake.apiKey, { now })).toThrow(expect.objectContaining({ status: 401, message: expect.stringContaining('outside the accepted window') }));
  expect(() => verifySignatureCallback(signedAt(nowSeconds + 299), fake.apiKey, { now })).not.toThrow();
  expect(() => verifySignatureCallback(signedAt(nowSeconds + 301), fake.apiKey, { now })).toThrow(expect.objectContaining({ status: 401 }));
  // A 13-digit (millisecond) or 12-digit time is far in the future: 401, not a crash.
  expect(() => verifySignatureCallback(signedAt(now.getTime()), fake.apiKey, { now })).toThrow(expect.objectContaining({ status: 400 }));
  expect(() => verifySignatureCallback(signedAt(999_999_999_999), fake.apiKey, { now })).toThrow(expect.objectContaining({ status: 401 }));
  const wide = { maxAgeSeconds: 7200, maxFutureSkewSeconds: 10 };
  expect(() => verifySignatureCallback(signedAt(nowSeconds - 7000), fake.apiKey, { now, freshness: wide })).not.toThrow();
  expect(() => verifySignatureCallback(signedAt(nowSeconds + 60), fake.apiKey, { now, freshness: wide })).toThrow(expect.objectContaining({ status: 401 }));
});

test('cancelRequest posts /signature_request/cancel/{id}; an unknown request or a wrong key is a SignatureProviderError', async () => {
  const provider = createDropboxSignProvider({ apiKey: fake.apiKey, baseUrl: fake.baseUrl });
  const { providerRequestId } = await provider.dispatch(dispatch(randomUUID()));
  await expect(provider.cancelRequest(providerRequestId)).resolves.toBeUndefined();
  expect(fake.canceled).toContain(providerRequestId);
  await expect(provider.cancelRequest('0123abcd')).rejects.toMatchObject({ name: 'SignatureProviderError', providerStatus: 404 });
  const wrongKey = createDropboxSignProvider({ apiKey: 'wrong', baseUrl: fake.baseUrl });
  await expect(wrongKey.cancelRequest(providerRequestId)).rejects.toMatchObject({ providerStatus: 401 });
});

test('fetchRequestState reads is_complete and our metadata from GET /signature_request/{id}', async () => {
  const provider = createDropboxSignProvider({ apiKey: fake.apiKey, baseUrl: fake.baseUrl });
  const approvalRequestId = randomUUID();
  const { providerRequestId } = await provider.dispatch(dispatch(approvalRequestId));
  await expect(provider.fetchRequestState(providerRequestId)).resolves.toEqual({ allSigned: false, approvalRequestId });
  fake.markAllSigned(providerRequestId);
  await expect(provider.fetchRequestState(providerRequestId)).resolves.toEqual({ allSigned: true, approvalRequestId });
  expect(fake.stateReads.filter((id) => id === providerRequestId)).toHaveLength(2);
  await expect(provider.fetchRequestState('0123abcd')).rejects.toMatchObject({ name: 'SignatureProviderError', providerStatus: 404 });
  const wrongKey = createDropboxSignProvider({ apiKey: 'wrong', baseUrl: fake.baseUrl });
  await expect(wrongKey.fetchRequestState(providerRequestId)).rejects.toMatchObject({ providerStatus: 401 });
});
