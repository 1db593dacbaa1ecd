/**
 * Middleware of owner-scoped routes: requires `Authorization: Bearer <jwt>`
 * and puts the owner's global user id in `res.locals.owner`.
 */
import type { RequestHandler, Response } from 'express';
import { InvalidOwnerTokenError, verifyOwnerToken, type OwnerTokenConfig } from '../auth/owner-token';
import { UnauthenticatedError } from './api-errors';

export function requireOwner(tokens: OwnerTokenConfig): RequestHandler {
  return async (req, res, next) => {
    const header = req.get('authorization');
    const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match) return next(new UnauthenticatedError('missing Authorization: Bearer <token>'));
    try {
      res.locals.owner = await verifyOwnerToken(match[1] as string, tokens);
      next();
    } catch (error) {
      next(error instanceof InvalidOwnerTokenError ? new UnauthenticatedError(error.message) : error);
    }
  };
}

export function ownerOf(res: Response): string {
  return res.locals.owner as string;
}
