import type { Request } from 'express';
import { notFound } from '../../lib/errors.js';
import type { PreflightReport } from '../../clusters/preflight.js';
import type { PrefetchItem, PrefetchOptions, PrefetchResult } from '../../artifacts/prefetch.js';
import { parseWith } from '../errors.js';
import type { ApiRoute } from './router.js';
import { clusterNameSchema } from './schemas.js';

/**
 * A cluster's checks before power-on, over the API: `POST /clusters/{name}/preflight` answers
 * the report (every check with its state, HTTP status and detail; `ok` false when one failed), and
 * `POST /clusters/{name}/prefetch` streams its progress as NDJSON — one object per line, progress
 * first, the result last — so a client sees a 2.6 GB ISO arrive instead of a request that hangs.
 */
export interface ClusterChecksApi {
  preflight(name: string, opts?: { readonly signal?: AbortSignal }): Promise<PreflightReport>;
  prefetch(names: readonly string[], opts?: PrefetchOptions): Promise<PrefetchResult>;
}

export interface ClusterLookup {
  get(name: string): Promise<unknown>;
}

export function clusterChecksRoutes(checks: ClusterChecksApi, clusters: ClusterLookup): ApiRoute[] {
  const clusterName = async (req: Request): Promise<string> => {
    const name = parseWith(clusterNameSchema, req.params['name'], 'name');
    if (!(await clusters.get(name))) throw notFound('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`);
    return name;
  };
  return [
    {
      method: 'post',
      path: '/clusters/:name/preflight',
      role: 'operator',
      handler: async (req, res) => {
        const name = await clusterName(req);
        const abort = new AbortController();
        res.on('close', () => abort.abort());
        res.json(await checks.preflight(name, { signal: abort.signal }));
      },
    },
    {
      method: 'post',
      path: '/clusters/:name/prefetch',
      role: 'operator',
      handler: async (req, res) => {
        const name = await clusterName(req);
        res.status(200).type('application/x-ndjson').set('Cache-Control', 'no-store');
        res.flushHeaders();
        const line = (o: Record<string, unknown>): void => {
          if (!res.writableEnded) res.write(`${JSON.stringify(o)}\n`);
        };
        let last = '';
        try {
          // The download goes on when the client leaves: the cache is shared with the machines.
          const result = await checks.prefetch([name], {
            intervalMs: 1000,
            onProgress: (items: readonly PrefetchItem[]) => {
              const text = JSON.stringify(items);
              if (text === last) return;
              last = text;
              line({ type: 'progress', cluster: name, items });
            },
          });
          line({ type: 'result', cluster: name, ok: result.ok, seconds: result.seconds, items: result.items });
        } catch (err) {
          // The status line is gone already: the failure is the stream's last object.
          line({ type: 'error', cluster: name, error: { code: 'ERR_PREFETCH', message: err instanceof Error ? err.message : String(err) } });
        } finally {
          res.end();
        }
      },
    },
  ];
}
