/**
 * The Dropbox Sign adapter against a local server speaking the same protocol
 * (real HTTP on 127.0.0.1), and callback verification of what it sends.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { CallbackRejectedError, createDropboxSignProvider, SignatureDispatchError, verifySignatureCallback } from '@petcover/domain';
import { startFakeDropboxSign, type FakeDropboxSign } from '@petcover/domain/testing';

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
  expect(verifySignatureCallback(event, fake.apiKey).event.event_type).toBe('signature_request_signed');
  expect(verifySignatureCallback({ json: JSON.stringify(event) }, fake.apiKey).signature_request?.signature_request_id).toBe('abc');

  const tampered = { ...event, event: { ...event.event, event_type: 'signature_request_all_signed' } };
  expect(() => verifySignatureCallback(tampered, fake.apiKey)).toThrow(expect.objectContaining({ status: 401 }));
  expect(() => verifySignatureCallback(event, 'another-key')).toThrow(CallbackRejectedError);
  expect(() => verifySignatureCallback({ json: '{not json' }, fake.apiKey)).toThrow(expect.objectContaining({ status: 400 }));
  expect(() => verifySignatureCallback({ event: { event_type: 'x' } }, fake.apiKey)).toThrow(expect.objectContaining({ status: 400 }));
});
