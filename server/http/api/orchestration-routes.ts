import type { Request } from 'express';
import { z } from 'zod';
import { AppError, notFound } from '../../lib/errors.js';
import { parseWith } from '../errors.js';
import type { ApiRoute } from './router.js';
import { clusterNameSchema, kubernetesVersionSchema } from './schemas.js';

const source = (req: Request): string => `api:${req.principal?.name ?? 'unknown'}`;

/**
 * The cluster routes that belong to the orchestration: the admin kubeconfig and retry. The
 * HTTP layer knows only this narrow interface; `main.ts` hands it the orchestrator.
 */
export interface ClusterControl {
  /** The admin kubeconfig once init has run, else null. */
  kubeconfig(cluster: string): Promise<string | null>;
  /** Resets what failed in the cluster's bootstrap and resumes it. */
  retry(cluster: string): Promise<{ readonly machines: readonly string[]; readonly steps: readonly string[] }>;
  /** The rolling upgrade by reimage (server/orchestrator/upgrade.ts). */
  startUpgrade?(cluster: string, req: { readonly kubernetesVersion: string; readonly maxUnavailable?: number | undefined; readonly force?: boolean | undefined }, source: string): Promise<unknown>;
  controlUpgrade?(cluster: string, action: 'pause' | 'resume' | 'abort', source: string): Promise<unknown>;
}

export const upgradeRequestSchema = z
  .object({
    kubernetesVersion: kubernetesVersionSchema,
    maxUnavailable: z.number().int().min(1).max(200).optional().describe('workers reimaged at once (default: the upgrade-max-unavailable setting)'),
    force: z.boolean().optional().describe('skip the preflight of the new version\'s upstreams (mirrors racksmith\'s host cannot reach); the version rules still hold'),
  })
  .strict();

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
    {
      method: 'post',
      path: '/clusters/:name/upgrade',
      role: 'admin',
      handler: async (req, res) => {
        const name = await clusterName(req);
        const body = parseWith(upgradeRequestSchema, req.body ?? {});
        if (!control.startUpgrade) throw new AppError('unavailable', 'ERR_NO_UPGRADE', 'this racksmith cannot upgrade clusters');
        const upgrade = await control.startUpgrade(name, body, source(req));
        res.status(202).json({ cluster: name, upgrade });
      },
    },
    ...(['pause', 'resume', 'abort'] as const).map(
      (action): ApiRoute => ({
        method: 'post',
        path: `/clusters/:name/upgrade/${action}`,
        role: 'operator',
        handler: async (req, res) => {
          const name = await clusterName(req);
          if (!control.controlUpgrade) throw new AppError('unavailable', 'ERR_NO_UPGRADE', 'this racksmith cannot upgrade clusters');
          res.json({ cluster: name, upgrade: await control.controlUpgrade(name, action, source(req)) });
        },
      }),
    ),
  ];
}
