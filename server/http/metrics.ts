import { Router, type Request, type RequestHandler } from 'express';
import { AppError } from '../lib/errors.js';
import { HTTP_METRICS, instruments } from '../lib/metric-catalogue.js';
import type { Metrics, MetricsRegistry } from '../lib/metrics.js';
import { constantTimeEqual } from '../lib/secrets.js';

declare module 'express-serve-static-core' {
  interface Locals {
    /** Set by routers Express cannot name a route for (static files), for the route label. */
    metricsRoute?: string;
  }
}

/**
 * The route label: the route's template (`/api/v1/machines/:mac`), never the raw path, so that a
 * scan of random URLs cannot create one time series per URL. Express resets `req.baseUrl` when a
 * handler throws, so the API's mount point is recovered from the URL.
 */
export function routeLabel(req: Request, locals: { metricsRoute?: string | undefined }): string {
  if (locals.metricsRoute) return locals.metricsRoute;
  const path = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof path !== 'string') return 'unmatched';
  const base = req.baseUrl || (req.originalUrl.startsWith('/api/v1/') ? '/api/v1' : '');
  return base + path;
}

/** One answered request in the HTTP metrics (the Express stack and the lean front alike). */
export function recordRequest(h: HttpInstruments, method: string, route: string, status: number, seconds: number): void {
  h.requests.inc({ method, route, status });
  h.duration.observe({ method, route }, seconds);
}

export type HttpInstruments = ReturnType<typeof instruments<typeof HTTP_METRICS>>;

export function httpMetrics(m: Metrics): RequestHandler {
  const h = instruments(m, HTTP_METRICS);
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => recordRequest(h, req.method, routeLabel(req, res.locals), res.statusCode, Number(process.hrtime.bigint() - started) / 1e9));
    next();
  };
}

/**
 * `GET /metrics` in the Prometheus text format. Open by default, like most exporters on a
 * management network; with `RACKSMITH_METRICS_TOKEN` set, scrapers must send it as a bearer
 * token (Prometheus: `authorization: {credentials_file: …}`).
 */
export function metricsRouter(registry: MetricsRegistry, token?: string | undefined): Router {
  const r = Router();
  r.get('/metrics', async (req, res) => {
    res.locals.metricsRoute = '/metrics';
    if (token) {
      const header = req.get('authorization') ?? '';
      const given = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
      if (!given || !constantTimeEqual(given, token)) {
        throw new AppError('unauthorized', 'ERR_UNAUTHORIZED', 'this /metrics needs the metrics token: Authorization: Bearer <RACKSMITH_METRICS_TOKEN>');
      }
    }
    const text = await registry.text();
    res.setHeader('Cache-Control', 'no-store');
    res.type(registry.contentType).send(text);
  });
  return r;
}
