import { randomUUID } from 'node:crypto';
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
    const given = req.get('x-request-id');
    const id = given && /^[A-Za-z0-9._-]{1,64}$/.test(given) ? given : randomUUID();
    req.id = id;
    // Made when a handler logs: most requests only write the access line below.
    let child: Logger | undefined;
    Object.defineProperty(req, 'log', { configurable: true, enumerable: false, get: () => (child ??= log.child({ reqId: id })) });
    res.setHeader('X-Request-Id', id);
    const started = process.hrtime.bigint();
    // Read now: routers mounted below (the API at /api/v1) strip their prefix from req.path while
    // they handle the request, so a response sent from inside one would log "/machines".
    const path = loggedPath(fullPath(req.originalUrl));
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      // The path only (query strings can carry tokens: browser event streams), and seed tokens out of it.
      (child ?? log).info({ ...(child ? {} : { reqId: id }), method: req.method, path, status: res.statusCode, ms: Math.round(ms * 10) / 10, remote: peerAddress(req) }, 'http');
    });
    next();
  };
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
