/**
 * How the api answers errors: always JSON `{ error, message, fields? }`, a
 * precise status, never a stack trace. Domain errors map to statuses here and
 * only here.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { CallbackRejectedError, NotFoundError, SignatureDispatchError, StateConflictError, UnknownPlanError } from '@petcover/domain';
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
  if (error instanceof SignatureDispatchError) return { status: 502, error: 'signature_provider_failed', message: error.message };
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

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (res.headersSent) return next(error);
    const answer = answerFor(error);
    if (!answer) {
      logger.error({ err: error, method: req.method, path: req.path }, 'request failed');
      res.status(500).json({ error: 'internal', message: 'internal error; see the api logs' });
      return;
    }
    if (answer.status >= 500) logger.warn({ err: error, method: req.method, path: req.path }, 'upstream failure');
    const { status, ...body } = answer;
    res.status(status).json(body);
  };
}

export const notFoundHandler: RequestHandler = (req, res) => {
  res.status(404).json({ error: 'not_found', message: `no route ${req.method} ${req.path}` });
};
