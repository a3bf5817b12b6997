import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import type { Logger } from '../lib/log.js';
import { peerAddress } from './client-address.js';

declare module 'express-serve-static-core' {
  interface Request {
    id: string;
    log: Logger;
  }
}

/**
 * A request id per HTTP request (taken from `X-Request-Id` when a proxy set a sane one), a child
 * logger carrying it, and one access log line when the response is done.
 */
export function requestContext(log: Logger): RequestHandler {
  return (req, res, next) => {
    const id = requestIdOf(req.get('x-request-id'));
    req.id = id;
    // Made when a handler logs: most requests only write the access line below.
    let child: Logger | undefined;
    Object.defineProperty(req, 'log', { configurable: true, enumerable: false, get: () => (child ??= log.child({ reqId: id })) });
    res.setHeader('X-Request-Id', id);
    const started = process.hrtime.bigint();
    // Read now: routers mounted below (the API at /api/v1) strip their prefix from req.path while
    // they handle the request, so a response sent from inside one would log "/machines".
    const path = fullPath(req.originalUrl);
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      writeAccessLine(child ?? log, { reqId: child ? undefined : id, method: req.method, path, status: res.statusCode, ms, req });
    });
    next();
  };
}

/** The request id: a proxy's `X-Request-Id` when it is a sane one, else a new UUID. */
export function requestIdOf(given: string | string[] | undefined): string {
  return typeof given === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(given) ? given : randomUUID();
}

/**
 * The access log line, one per request, written when the response is done: the path only (query
 * strings can carry tokens: browser event streams), and seed tokens out of it. `reqId` is left out
 * when the logger already carries it.
 */
export function writeAccessLine(log: Logger, a: { reqId: string | undefined; method: string; path: string; status: number; ms: number; req: IncomingMessage }): void {
  log.info({ ...(a.reqId === undefined ? {} : { reqId: a.reqId }), method: a.method, path: loggedPath(a.path), status: a.status, ms: Math.round(a.ms * 10) / 10, remote: peerAddress(a.req) }, 'http');
}

/**
 * A request path as the access log writes it: a seed token (`/seed/<token>/…`) is a machine's
 * credential until it phones home, so only its place is kept. Express decodes nothing in
 * `req.path`, so `%2F` cannot smuggle the token past the first segment.
 */
/** The request target's path, without the query string (where tokens may be). */
export function fullPath(originalUrl: string): string {
  const q = originalUrl.search(/[?#]/);
  return q < 0 ? originalUrl : originalUrl.slice(0, q);
}

export function loggedPath(path: string): string {
  return path.replace(/^\/+seed\/[^/]*/i, '/seed/[redacted]');
}
