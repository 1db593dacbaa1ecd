/**
 * How the api answers errors: always JSON `{ error, message, fields? }`, a
 * precise status, never a stack trace. Domain errors map to statuses here and
 * only here.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { CallbackRejectedError, NotFoundError, SignatureProviderError, StateConflictError, UnknownPlanError } from '@petcover/domain';
import type { z } from 'zod';

export interface FieldError {
  /** Dotted path inside the request, e.g. `body.birthDate`, `params.petId`. */
  path: string;
  message: string;
  code: string;
}

/** A request that fails its zod schema: 400 with one entry per bad field. */
export class RequestValidationError extends Error {
  constructor(readonly fields: FieldError[]) {
    super(`request validation failed: ${fields.map((f) => `${f.path}: ${f.message}`).join('; ')}`);
    this.name = 'RequestValidationError';
  }
}

export class UnauthenticatedError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'UnauthenticatedError';
  }
}

/** The body is not of a type the route reads: 415. */
export class UnsupportedMediaTypeError extends Error {
  constructor(readonly accepted: string) {
    super(`request body must be ${accepted}`);
    this.name = 'UnsupportedMediaTypeError';
  }
}

/** A request that carries a body must carry JSON (415 otherwise); no body at all is fine. */
export const requireJsonBody: RequestHandler = (req, _res, next) => {
  // `req.is` is null without a body, false with a body of another type; an empty body is no body.
  const empty = req.get('content-length') === '0';
  next(!empty && req.is('application/json') === false ? new UnsupportedMediaTypeError('application/json') : undefined);
};

/** What clients see when the signature provider fails; its details (URLs, provider text) stay in the logs. */
export const SIGNATURE_PROVIDER_FAILED_MESSAGE = 'the signature provider could not take the request; nothing is lost, try again in a minute';

/** Parses `value` with `schema`, prefixing field paths with `where` (body, params, query). */
export function parseRequestPart<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new RequestValidationError(
    parsed.error.issues.map((issue) => ({
      path: [where, ...issue.path.map(String)].join('.'),
      message: issue.message,
      code: issue.code,
    })),
  );
}

interface ErrorAnswer {
  status: number;
  error: string;
  message: string;
  fields?: unknown[];
}

/** Maps a thrown error to its answer; undefined → 500. */
function answerFor(error: unknown): ErrorAnswer | undefined {
  if (error instanceof RequestValidationError) return { status: 400, error: 'validation_failed', message: 'the request has invalid fields', fields: error.fields };
  if (error instanceof UnauthenticatedError) return { status: 401, error: 'unauthenticated', message: error.message };
  if (error instanceof NotFoundError) return { status: 404, error: 'not_found', message: error.message };
  if (error instanceof UnknownPlanError) return { status: 422, error: 'unknown_plan', message: error.message };
  if (error instanceof StateConflictError) return { status: 409, error: 'conflict', message: error.message };
  if (error instanceof SignatureProviderError) return { status: 502, error: 'signature_provider_failed', message: SIGNATURE_PROVIDER_FAILED_MESSAGE };
  if (error instanceof UnsupportedMediaTypeError) return { status: 415, error: 'unsupported_media_type', message: error.message };
  if (error instanceof CallbackRejectedError) {
    return error.status === 401
      ? { status: 401, error: 'invalid_event_hash', message: error.message }
      : { status: 400, error: 'invalid_callback', message: error.message, fields: error.fields };
  }
  // Errors raised by express's body parsers carry `type` and `status`.
  const parserError = error as { type?: string; status?: number; limit?: number };
  if (parserError.type === 'entity.too.large') return { status: 413, error: 'body_too_large', message: `request body is larger than ${parserError.limit} bytes` };
  if (parserError.type === 'entity.parse.failed') return { status: 400, error: 'malformed_json', message: 'request body is not valid JSON' };
  if (parserError.type === 'encoding.unsupported' || parserError.type === 'charset.unsupported') {
    return { status: 415, error: 'unsupported_encoding', message: 'request body encoding is not supported' };
  }
  if (typeof parserError.status === 'number' && parserError.status >= 400 && parserError.status < 500) {
    return { status: parserError.status, error: 'bad_request', message: 'the request could not be read' };
  }
  return undefined;
}

/**
 * What a failure's log line may carry: its type, code and message, where a
 * query error's message is the database's own (drizzle's "Failed query"
 * message lists the bound parameters: names, e-mail addresses). No PII.
 */
export function loggableError(error: unknown): { type: string; code?: string; message: string; providerStatus?: number } {
  const err = error as Error & { cause?: unknown; code?: unknown; providerStatus?: number };
  const cause = err?.cause as (Error & { code?: unknown }) | undefined;
  const databaseError = err?.name === 'DrizzleQueryError' && cause instanceof Error;
  const source = databaseError ? cause : err;
  return {
    type: err?.name ?? typeof error,
    ...(typeof source?.code === 'string' ? { code: source.code } : {}),
    // A provider may echo the signer's address in its error text.
    message: String(source?.message ?? error).replace(/[^\s@"'<>(),;:]+@[^\s@"'<>(),;:]+\.[a-z]{2,}/gi, '<email>'),
    ...(typeof err?.providerStatus === 'number' ? { providerStatus: err.providerStatus } : {}),
  };
}

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (res.headersSent) return next(error);
    const answer = answerFor(error);
    if (!answer) {
      logger.error({ failure: loggableError(error), method: req.method, path: req.path }, 'request failed');
      res.status(500).json({ error: 'internal', message: 'internal error; see the api logs' });
      return;
    }
    if (answer.status >= 500) logger.warn({ failure: loggableError(error), method: req.method, path: req.path }, 'upstream failure');
    const { status, ...body } = answer;
    res.status(status).json(body);
  };
}

export const notFoundHandler: RequestHandler = (req, res) => {
  res.status(404).json({ error: 'not_found', message: `no route ${req.method} ${req.path}` });
};
