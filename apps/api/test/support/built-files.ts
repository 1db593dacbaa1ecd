/**
 * Where the api's process tests find the built apps (`pnpm build`), and the
 * one check that fails a file at once when they are missing.
 */
import path from 'node:path';
import { BUILT_APP_MAINS, requireBuiltFiles } from '@petcover/outbox/testing';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
export const API_DIST = path.join(REPO_ROOT, 'apps/api/dist');
export const API_MAIN = path.join(API_DIST, 'main.js');
export const PUBLISHER_MAIN = BUILT_APP_MAINS.publisher;
export const CONSUMER_MAIN = BUILT_APP_MAINS.consumer;

/** Requires the built api, events-publisher and events-consumer, plus `extra` built files. */
export function requireBuiltApps(extra: readonly string[] = []): void {
  requireBuiltFiles([API_MAIN, PUBLISHER_MAIN, CONSUMER_MAIN, ...extra]);
}

export { requireBuiltFiles };
