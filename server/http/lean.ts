import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import type { Logger } from '../lib/log.js';
import type { Metrics } from '../lib/metrics.js';
import { HTTP_METRICS, instruments } from '../lib/metric-catalogue.js';
import { requestIdOf, writeAccessLine } from './context.js';
import { errorReply } from './errors.js';
import { recordRequest } from './metrics.js';

/**
 * The few machine-facing paths a rack asks by the hundred a second — a waiting machine's iPXE
 * polls `/boot.ipxe` every few seconds — are answered here, before Express. Express's own
 * dispatch (request and response set-up, the middleware and router walk) costs more per request
 * than racksmith's decision, lookup and render together (docs/decisions/2205-boot-scripts-before-express.md).
 * Everything else falls through to Express. A lean route gets what the Express stack gives every
 * request — request id, access log line, metrics, the same JSON errors — and returns text.
 */
export interface LeanReply {
  readonly type: string;
  readonly body: string;
}

/** Answers a GET (or HEAD) of its path with the request and its parsed query (`a=1&a=2` → array). */
export type LeanHandler = (req: IncomingMessage, query: Record<string, string | string[] | undefined>) => Promise<LeanReply>;

/** Exact paths (no query string) → their handler. */
export type LeanRoutes = ReadonlyMap<string, LeanHandler>;

export interface LeanDeps {
  readonly log: Logger;
  readonly metrics?: Metrics | undefined;
}

export function leanFront(routes: LeanRoutes, fallback: RequestListener, deps: LeanDeps): RequestListener {
  const h = deps.metrics ? instruments(deps.metrics, HTTP_METRICS) : null;
  // The access line has no field the log's redaction names (log.ts): without it pino writes the
  // same line in two thirds of the time, on a path asked thousands of times a second.
  const access = deps.log.child({}, { redact: { paths: [] } });

  async function answer(handler: LeanHandler, path: string, search: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const id = requestIdOf(req.headers['x-request-id']);
    const started = process.hrtime.bigint();
    res.setHeader('X-Request-Id', id);
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      writeAccessLine(access, { reqId: id, method: req.method ?? 'GET', path, status: res.statusCode, ms, req });
      if (h) recordRequest(h, req.method ?? 'GET', path, res.statusCode, ms / 1000);
    });
    let status = 200;
    let type: string;
    let body: string;
    try {
      const reply = await handler(req, parseQuery(search));
      type = reply.type;
      body = reply.body;
      res.setHeader('Cache-Control', 'no-store');
    } catch (err) {
      const e = errorReply(err, path, deps.log.child({ reqId: id }));
      status = e.status;
      if (e.retryAfter) res.setHeader('Retry-After', String(e.retryAfter));
      type = 'application/json; charset=utf-8';
      body = JSON.stringify(e.body);
    }
    if (res.headersSent || res.destroyed) return;
    res.statusCode = status;
    res.setHeader('Content-Type', type);
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const handler = req.method === 'GET' || req.method === 'HEAD' ? routes.get(path) : undefined;
    if (!handler) {
      fallback(req, res);
      return;
    }
    void answer(handler, path, q < 0 ? '' : url.slice(q + 1), req, res);
  };
}
