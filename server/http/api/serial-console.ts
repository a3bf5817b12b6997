import { z } from 'zod';
import type { Mac } from '../../lib/mac.js';
import { parseWith } from '../errors.js';
import { pathMac, type ApiRoute } from './router.js';

/**
 * The captured serial console of a machine (IPMI SOL while it installs): read it, let go of it
 * for a person, or ask for it again. The work is done by whatever implements `ConsoleApi` (the
 * console capture service, wired by main.ts).
 */
export interface ConsoleApi {
  console(mac: Mac, after: number): Promise<unknown>;
  detach(mac: Mac, source: string): Promise<unknown>;
  attach(mac: Mac, source: string): Promise<unknown>;
}

export const consoleActionSchema = z.object({ action: z.enum(['detach', 'attach']).describe('detach frees the BMC SOL session for a person; attach asks racksmith to capture again') }).strict();
const afterSchema = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export function consoleRoutes(api: ConsoleApi): ApiRoute[] {
  return [
    {
      method: 'get',
      path: '/machines/:mac/console',
      role: 'viewer',
      handler: async (req, res) => {
        const mac = pathMac(req);
        const q = req.query['after'];
        const after = q === undefined ? 0 : parseWith(afterSchema, q, 'after');
        res.json(await api.console(mac, after));
      },
    },
    {
      method: 'post',
      path: '/machines/:mac/console',
      role: 'operator',
      handler: async (req, res) => {
        const mac = pathMac(req);
        const body = parseWith(consoleActionSchema, req.body);
        const source = `api:${req.principal?.name ?? 'unknown'}`;
        res.json(body.action === 'detach' ? await api.detach(mac, source) : await api.attach(mac, source));
      },
    },
  ];
}
