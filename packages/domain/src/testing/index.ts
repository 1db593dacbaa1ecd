/**
 * Test kit of the domain (`@petcover/domain/testing`): a fake Dropbox Sign
 * server and an inline handler runner.
 */
export { FAKE_SIGNING_URL_BASE, startFakeDropboxSign } from './fake-dropbox-sign';
export type { FakeDropboxSign, ReceivedSignatureRequest } from './fake-dropbox-sign';
export { runHandlersInline } from './run-handlers-inline';
export type { InlineRun } from './run-handlers-inline';
