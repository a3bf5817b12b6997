import express, { type Express, type Router } from 'express';
import type { Logger } from '../lib/log.js';
import type { Metrics } from '../lib/metrics.js';
import type { ServiceHealth } from '../lib/service.js';
import type { DatabaseHealth } from '../inventory/store.js';
import { apiRouter, type ApiDeps } from './api/router.js';
import { openApiDocument } from './api/openapi.js';
import { requestContext } from './context.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { httpMetrics } from './metrics.js';

export interface AppDeps extends ApiDeps {
  readonly log: Logger;
  readonly version: string;
  /** Each service's state, for /healthz. */
  readonly health: () => Record<string, ServiceHealth>;
  /** Whether the database answers: /healthz answers 503 "degraded" while it does not. */
  readonly database?: (() => DatabaseHealth) | undefined;
  /** True while the process is still starting its services: /healthz answers 503 "starting". */
  readonly starting?: (() => boolean) | undefined;
  /** What machines see, without an API token: boot scripts, seeds, artifacts, phone-home. */
  readonly machineRouter?: Router | undefined;
  /** Anything else served at the root (metrics, web console). */
  readonly rootRouters?: readonly Router[] | undefined;
  /** Request counts and latency by route template. */
  readonly metrics?: Metrics | undefined;
}

export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // Express's "extended" parser builds nested objects from `a[b]=c`; the API takes flat queries only.
  app.set('query parser', 'simple');
  if (deps.metrics) app.use(httpMetrics(deps.metrics));
  app.use(requestContext(deps.log));

  app.get('/healthz', (_req, res) => {
    const services = deps.health();
    const database = deps.database?.();
    const failed = Object.values(services).some((s) => s.state === 'failed');
    // Degraded: DHCP still answers known machines from memory, but nothing can be recorded.
    const status = failed ? 'failing' : deps.starting?.() ? 'starting' : database?.state === 'unavailable' ? 'degraded' : 'ok';
    res.status(status === 'ok' ? 200 : 503).json({ status, version: deps.version, services, ...(database ? { database } : {}) });
  });
  app.get('/api/v1/openapi.json', (_req, res) => {
    res.json(openApiDocument(deps.version));
  });
  app.use('/api/v1', apiRouter(deps));
  if (deps.machineRouter) app.use(deps.machineRouter);
  for (const r of deps.rootRouters ?? []) app.use(r);
  app.use(notFoundHandler);
  app.use(errorHandler);
  return app;
}
