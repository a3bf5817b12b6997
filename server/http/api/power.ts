import { z } from 'zod';
import { notFound } from '../../lib/errors.js';
import type { Mac } from '../../lib/mac.js';
import { parseWith } from '../errors.js';
import { pathMac, type ApiRoute } from './router.js';
import { macSchema, rackSchema } from './schemas.js';

/**
 * The power routes: machine power, reimage, rack power jobs. The HTTP layer parses and renders;
 * the work is done by whatever implements `PowerApi` (the power service, wired by main.ts — the
 * HTTP service does not import it).
 */
export const POWER_ACTIONS = ['on', 'off', 'cycle', 'reset', 'status'] as const;
export type PowerActionInput = (typeof POWER_ACTIONS)[number];

export interface RackPowerInput {
  readonly action: PowerActionInput;
  readonly concurrency?: number | undefined;
  readonly delaySeconds?: number | undefined;
  readonly force?: boolean | undefined;
  readonly source: string;
}

export interface PowerApi {
  machinePower(mac: Mac, action: PowerActionInput, source: string): Promise<Record<string, unknown>>;
  reimage(mac: Mac, opts: { readonly force: boolean; readonly source: string }): Promise<Record<string, unknown>>;
  identify(mac: Mac, opts: { readonly on: boolean; readonly seconds: number | null; readonly source: string }): Promise<Record<string, unknown>>;
  rackPower(rack: string, opts: RackPowerInput): Promise<Record<string, unknown>>;
  rackJob(rack: string, id: string): Record<string, unknown> | null;
  /** A job over selected machines (the console's bulk power), run like a rack job. */
  powerJob(opts: Omit<RackPowerInput, 'source'> & { readonly macs: readonly Mac[]; readonly source: string }): Promise<Record<string, unknown>>;
  /** Any power job, rack or selection, by id. */
  job(id: string): Record<string, unknown> | null;
}

export const machinePowerSchema = z.object({ action: z.enum(POWER_ACTIONS) }).strict();

export const reimageSchema = z
  .object({ force: z.boolean().optional().describe('reimage a control-plane node even when etcd would lose quorum') })
  .strict()
  .optional();

export const rackPowerSchema = z
  .object({
    action: z.enum(POWER_ACTIONS),
    concurrency: z.number().int().min(1).max(64).optional().describe('machines handled at once'),
    delaySeconds: z.number().min(0).max(600).optional().describe('seconds between two machines\u2019 starts'),
    force: z.boolean().optional().describe('power on without the preflight of the machines\u2019 clusters and without prefetching their installer artifacts'),
  })
  .strict();

export const powerJobSchema = rackPowerSchema
  .extend({ macs: z.array(macSchema).min(1, 'select at least one machine').max(10_000).describe('the machines, in any MAC form') })
  .strict();
export const identifySchema = z
  .object({
    on: z.boolean().describe('true lights the locator LED, false turns it off'),
    seconds: z.number().int().min(1).max(86_400).optional().describe('turn it off again after this many seconds (default: stays on until turned off)'),
  })
  .strict()
  .refine((b) => b.on || b.seconds === undefined, { message: 'seconds only goes with on: true', path: ['seconds'] });

const jobIdSchema = z.string().regex(/^[0-9a-f]{12}$/, 'expected a job id (12 hex digits)');

export function powerRoutes(api: PowerApi): ApiRoute[] {
  const source = (req: { principal?: { name: string } }): string => `api:${req.principal?.name ?? 'unknown'}`;
  return [
    {
      method: 'post',
      path: '/machines/:mac/power',
      role: 'operator',
      handler: async (req, res) => {
        const mac = pathMac(req);
        const body = parseWith(machinePowerSchema, req.body);
        res.json(await api.machinePower(mac, body.action, source(req)));
      },
    },
    {
      method: 'post',
      path: '/machines/:mac/reimage',
      role: 'operator',
      handler: async (req, res) => {
        const mac = pathMac(req);
        const body = parseWith(reimageSchema, req.body) ?? {};
        const out = await api.reimage(mac, { force: body.force ?? false, source: source(req) });
        res.status(202).location(`/api/v1/machines/${mac}/events`).json(out);
      },
    },
    {
      method: 'post',
      path: '/machines/:mac/identify',
      role: 'operator',
      handler: async (req, res) => {
        const mac = pathMac(req);
        const body = parseWith(identifySchema, req.body);
        res.json(await api.identify(mac, { on: body.on, seconds: body.seconds ?? null, source: source(req) }));
      },
    },
    {
      method: 'post',
      path: '/racks/:rack/power',
      role: 'operator',
      handler: async (req, res) => {
        const rack = parseWith(rackSchema, req.params['rack'], 'rack');
        const body = parseWith(rackPowerSchema, req.body);
        const job = await api.rackPower(rack, { ...body, source: source(req) });
        res.status(202).location(`/api/v1/racks/${rack}/power/${String(job['id'])}`).json(job);
      },
    },
    {
      method: 'post',
      path: '/power/jobs',
      role: 'operator',
      handler: async (req, res) => {
        const body = parseWith(powerJobSchema, req.body);
        const job = await api.powerJob({ ...body, source: source(req) });
        res.status(202).location(`/api/v1/power/jobs/${String(job['id'])}`).json(job);
      },
    },
    {
      method: 'get',
      path: '/power/jobs/:job',
      role: 'viewer',
      handler: async (req, res) => {
        const id = parseWith(jobIdSchema, req.params['job'], 'job');
        const job = api.job(id);
        if (!job) throw notFound('ERR_UNKNOWN_JOB', `no power job ${id} (jobs are kept in memory until racksmith restarts; the machines' events keep the results)`);
        res.json(job);
      },
    },
    {
      method: 'get',
      path: '/racks/:rack/power/:job',
      role: 'viewer',
      handler: async (req, res) => {
        const rack = parseWith(rackSchema, req.params['rack'], 'rack');
        const id = parseWith(jobIdSchema, req.params['job'], 'job');
        const job = api.rackJob(rack, id);
        if (!job) throw notFound('ERR_UNKNOWN_JOB', `no power job ${id} for rack ${rack} (jobs are kept in memory until racksmith restarts; the machines' events keep the results)`);
        res.json(job);
      },
    },
  ];
}
