import type { Request, RequestHandler } from 'express';
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
  /** Requests that may carry the token as `?token=` (the event stream: EventSource cannot set headers). */
  readonly queryTokenAllowed?: ((req: Request) => boolean) | undefined;
}

/** The console's sign-in cookie: the API token itself, HttpOnly so that page scripts never see it. */
export const SESSION_COOKIE = 'racksmith_session';
/**
 * A write authenticated by the cookie must carry this header. A cross-site form cannot set a
 * header, so this stops cross-site request forgery even where SameSite is not honoured.
 */
export const CSRF_HEADER = 'x-requested-with';

const BOOTSTRAP: ApiToken = { id: 'bootstrap', name: 'RACKSMITH_ADMIN_TOKEN', role: 'admin', createdAt: '' };
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** One cookie's value from a Cookie header (RFC 6265 §5.4 "name=value; name=value"), or undefined. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    const raw = part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    try {
      return decodeURIComponent(raw);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

type Credential = { token: string; via: 'header' | 'cookie' | 'query' } | { error: string };

function credential(req: Request, deps: AuthDeps): Credential | null {
  const header = req.get('authorization');
  if (header !== undefined) {
    return header.startsWith('Bearer ') && header.slice(7).trim() ? { token: header.slice(7).trim(), via: 'header' } : { error: 'the Authorization header must be "Bearer <token>"' };
  }
  const q = req.query['token'];
  if (q !== undefined) {
    if (!deps.queryTokenAllowed?.(req)) return { error: 'a token in the query string is accepted only by the event stream; use Authorization: Bearer <token>' };
    return typeof q === 'string' && q ? { token: q, via: 'query' } : { error: 'give ?token= once' };
  }
  const cookie = readCookie(req.get('cookie'), SESSION_COOKIE);
  return cookie ? { token: cookie, via: 'cookie' } : null;
}

/** The principal a token stands for, or null when it is unknown or revoked. */
export async function principalOf(token: string, deps: AuthDeps): Promise<ApiToken | null> {
  if (deps.adminToken && constantTimeEqual(token, deps.adminToken)) return BOOTSTRAP;
  return deps.tokens.verify(token);
}

/** Resolves the bearer token (header; or the console's cookie; or `?token=` where a browser cannot set headers). */
export function authenticate(deps: AuthDeps): RequestHandler {
  return async (req, _res, next) => {
    const cred = credential(req, deps);
    if (!cred) return next(new AppError('unauthorized', 'ERR_UNAUTHORIZED', 'an API token is required: Authorization: Bearer <token>'));
    if ('error' in cred) return next(new AppError('unauthorized', 'ERR_UNAUTHORIZED', cred.error));
    if (cred.via === 'cookie' && !SAFE_METHODS.has(req.method) && !req.get(CSRF_HEADER)) {
      return next(new AppError('forbidden', 'ERR_CSRF', `a write signed in by cookie needs the ${CSRF_HEADER} header`));
    }
    const found = await principalOf(cred.token, deps);
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
