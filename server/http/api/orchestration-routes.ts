import type { Request } from 'express';
import { notFound } from '../../lib/errors.js';
import { parseWith } from '../errors.js';
import type { ApiRoute } from './router.js';
import { clusterNameSchema } from './schemas.js';

/**
 * The cluster routes that belong to the orchestration: the admin kubeconfig and retry. The
 * HTTP layer knows only this narrow interface; `main.ts` hands it the orchestrator.
 */
export interface ClusterControl {
  /** The admin kubeconfig once init has run, else null. */
  kubeconfig(cluster: string): Promise<string | null>;
  /** Resets what failed in the cluster's bootstrap and resumes it. */
  retry(cluster: string): Promise<{ readonly machines: readonly string[]; readonly steps: readonly string[] }>;
}

export interface ClusterLookup {
  get(name: string): Promise<unknown>;
}

export function orchestrationRoutes(control: ClusterControl, clusters: ClusterLookup): ApiRoute[] {
  const clusterName = async (req: Request): Promise<string> => {
    const name = parseWith(clusterNameSchema, req.params['name'], 'name');
    if (!(await clusters.get(name))) throw notFound('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`);
    return name;
  };
  return [
    {
      method: 'get',
      path: '/clusters/:name/kubeconfig',
      role: 'admin',
      handler: async (req, res) => {
        const name = await clusterName(req);
        const text = await control.kubeconfig(name);
        if (text === null) throw notFound('ERR_NO_KUBECONFIG', `cluster "${name}" has no admin kubeconfig yet: kubeadm init has not run on its first control node`);
        res.type('application/yaml').setHeader('Content-Disposition', `attachment; filename="${name}-admin.conf"`);
        res.setHeader('Cache-Control', 'no-store');
        res.send(text);
      },
    },
    {
      method: 'post',
      path: '/clusters/:name/retry',
      role: 'operator',
      handler: async (req, res) => {
        const name = await clusterName(req);
        const result = await control.retry(name);
        res.status(202).json({ cluster: name, retried: result });
      },
    },
  ];
}
