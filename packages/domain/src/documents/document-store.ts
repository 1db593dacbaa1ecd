/**
 * A small store for rendered and signed documents. The default keeps files in
 * a local directory (env DOCUMENT_STORE_DIR at the app's edge); another
 * backend (S3...) implements the same two methods.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface StoredDocument {
  key: string;
  sha256: string;
  byteSize: number;
}

export interface DocumentStore {
  /** Writes `bytes` under `key` (overwriting: keys are content-addressed by the caller). */
  put(key: string, bytes: Buffer): Promise<StoredDocument>;
  /** Reads a document back; throws DocumentNotFoundError when absent. */
  get(key: string): Promise<Buffer>;
  /** Removes a document; idempotent (absent is fine). */
  delete(key: string): Promise<void>;
}

export class DocumentNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`document ${key} is not in the document store`);
    this.name = 'DocumentNotFoundError';
  }
}

/** Default directory when none is configured. */
export const DEFAULT_DOCUMENT_STORE_DIR = path.join(os.tmpdir(), 'petcover-documents');

const KEY_PATTERN = /^[a-z0-9][a-z0-9._/-]*$/i;

export function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Documents as files under `root`. Writes go to a temporary name first and are
 * renamed into place, so a reader never sees half a PDF.
 */
export function createLocalDocumentStore(root: string = DEFAULT_DOCUMENT_STORE_DIR): DocumentStore {
  const fileOf = (key: string): string => {
    if (!KEY_PATTERN.test(key) || key.split('/').includes('..')) throw new Error(`invalid document key ${JSON.stringify(key)}`);
    return path.join(root, key);
  };
  return {
    async put(key, bytes) {
      const file = fileOf(key);
      await fs.mkdir(path.dirname(file), { recursive: true });
      const temporary = `${file}.${process.pid}.${Date.now()}.tmp`;
      await fs.writeFile(temporary, bytes);
      await fs.rename(temporary, file);
      return { key, sha256: sha256Hex(bytes), byteSize: bytes.length };
    },
    async get(key) {
      try {
        return await fs.readFile(fileOf(key));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DocumentNotFoundError(key);
        throw error;
      }
    },
    async delete(key) {
      await fs.rm(fileOf(key), { force: true });
    },
  };
}
