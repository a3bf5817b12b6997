import type { RequestHandler } from 'express';
import { AppError } from '../lib/errors.js';
import { constantTimeEqual } from '../lib/secrets.js';
import { roleAtLeast, type ApiToken, type TokenRole } from '../inventory/model.js';
import type { TokenRepo } from '../inventory/store.js';

declare module 'express-serve-static-core' {
  interface Request {
    principal?: ApiToken;
  }
}

export interface AuthDeps {
  readonly tokens: Pick<TokenRepo, 'verify'>;
  /** `RACKSMITH_ADMIN_TOKEN`: accepted as an admin without being stored. */
  readonly adminToken?: string | undefined;
}

const BOOTSTRAP: ApiToken = { id: 'bootstrap', name: 'RACKSMITH_ADMIN_TOKEN', role: 'admin', createdAt: '' };

/** Resolves the bearer token (header; or `?token=`/cookie where a browser cannot set headers). */
export function authenticate(deps: AuthDeps): RequestHandler {
  return async (req, _res, next) => {
    const header = req.get('authorization');
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    if (!token) return next(new AppError('unauthorized', 'ERR_UNAUTHORIZED', 'an API token is required: Authorization: Bearer <token>'));
    if (deps.adminToken && constantTimeEqual(token, deps.adminToken)) {
      req.principal = BOOTSTRAP;
      return next();
    }
    const found = await deps.tokens.verify(token);
    if (!found) return next(new AppError('unauthorized', 'ERR_UNAUTHORIZED', 'the API token is unknown or revoked'));
    req.principal = found;
    next();
  };
}

export function requireRole(role: TokenRole): RequestHandler {
  return (req, _res, next) => {
    const have = req.principal?.role;
    if (!have) return next(new AppError('unauthorized', 'ERR_UNAUTHORIZED', 'an API token is required'));
    if (!roleAtLeast(have, role)) return next(new AppError('forbidden', 'ERR_FORBIDDEN', `this needs ${role === 'admin' || role === 'operator' ? 'an' : 'a'} ${role} token; yours is ${have}`));
    next();
  };
}
