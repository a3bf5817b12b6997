import express, { Router, type Request, type RequestHandler } from 'express';
import { AppError, conflict, invalid, notFound } from '../../lib/errors.js';
import type { Mac } from '../../lib/mac.js';
import type { Cluster, Machine, PlanMachine, TokenRole, UbuntuRelease } from '../../inventory/model.js';
import { defaultInstallMethod, installMethodProblem, osOfUbuntuRelease, type InstallMethod, type OsId } from '../../inventory/os.js';
import type { Inventory } from '../../inventory/store.js';
import type { VipProblem } from '../../clusters/load-balancers.js';
import { authenticate, principalOf, requireRole, SESSION_COOKIE } from '../auth.js';
import { parseWith } from '../errors.js';
import { createEventStream, type EventStream } from '../event-stream.js';
import { parseMachinesSheet } from './csv.js';
import { guardClusterChange, guardPlacements } from './cluster-rules.js';
import { createResponseCache } from './response-cache.js';
import { DEFAULT_POD_SUBNET, DEFAULT_SERVICE_SUBNET, presentCluster, presentEvent, presentMachine } from './present.js';
import { nextStallAt } from '../../boot/loaders.js';
import {
  bulkMachinePatchSchema,
  clusterNameSchema,
  clusterPatchSchema,
  emptyQuerySchema,
  encodeMachineCursor,
  eventQuerySchema,
  importQuerySchema,
  machinePatchSchema,
  machineQuerySchema,
  macSchema,
  newClusterSchema,
  newMachineSchema,
  sessionSchema,
  siteEventQuerySchema,
  deleteMachineQuerySchema,
} from './schemas.js';

/**
 * Extensions other parts register under /api/v1 (cluster steps, kubeconfig, power, reimage…):
 * each route names the least role that may call it.
 */
export interface ApiRoute {
  readonly method: 'get' | 'post' | 'patch' | 'delete';
  readonly path: string;
  readonly role: TokenRole;
  /** POST and PATCH handlers receive a parsed JSON body. */
  readonly handler: RequestHandler;
}

export interface ClusterDetailProvider {
  /** The orchestration steps shown on `GET /clusters/{name}`. */
  steps(cluster: Cluster, machines: readonly Machine[]): Promise<unknown[]>;
  /** More of the cluster view (what the bootstrap waits for, who holds its lock). */
  detail?(cluster: Cluster, machines: readonly Machine[]): Promise<Record<string, unknown>>;
}

export interface ApiDeps {
  readonly inventory: Pick<Inventory, 'clusters' | 'machines' | 'events' | 'tokens'>;
  readonly adminToken?: string | undefined;
  readonly clusterDetail?: ClusterDetailProvider | undefined;
  readonly sshPublicKey: () => Promise<string>;
  readonly extraRoutes?: readonly ApiRoute[] | undefined;
  /** The live event stream; main.ts passes one whose lifecycle it owns (tests get a private one). */
  readonly eventStream?: EventStream | undefined;
  /** The store's revision (changes with every write); when given, list responses are reused while it holds. */
  readonly revision?: (() => string) | undefined;
  /** Why an address cannot be a cluster's VIP (server/clusters/load-balancers.ts); without it only the form is checked. */
  readonly checkVip?: ((vip: string, cluster: string) => Promise<VipProblem | null>) | undefined;
  /**
   * Takes a machine that is a node of its cluster out of it before its record goes
   * (server/orchestrator/removal.ts): returns the 202 answer, or null when there is nothing to
   * take out and the record may be deleted at once.
   */
  readonly removeFromCluster?: ((m: Machine, opts: { readonly force: boolean }) => Promise<Record<string, unknown> | null>) | undefined;
}

/** The only request that may carry the token in its query string (EventSource cannot set headers). */
const STREAM_PATH = '/events/stream';

/** The MAC in a path, in any accepted spelling. */
export function pathMac(req: Request): Mac {
  return parseWith(macSchema, req.params['mac'], 'mac');
}

/** The OS and install method a patch leaves a cluster with must go together. */
function checkInstallMethod(c: Cluster, patch: { os?: OsId | undefined; ubuntuRelease?: UbuntuRelease | undefined; installMethod?: InstallMethod | undefined }): void {
  const os = patch.os ?? (patch.ubuntuRelease ? osOfUbuntuRelease(patch.ubuntuRelease) : c.os);
  if (patch.os && patch.ubuntuRelease && osOfUbuntuRelease(patch.ubuntuRelease) !== patch.os) {
    throw new AppError('invalid', 'ERR_VALIDATION', `ubuntuRelease ${patch.ubuntuRelease} contradicts os ${patch.os}: give one of them`, 'ubuntuRelease');
  }
  // A new OS without a method takes that OS's own installer unless the cluster deploys images.
  const method = patch.installMethod ?? (os !== c.os && c.installMethod !== 'image' ? defaultInstallMethod(os) : c.installMethod);
  const problem = installMethodProblem(os, method);
  if (problem) throw new AppError('invalid', 'ERR_VALIDATION', problem, 'installMethod');
  if (method !== c.installMethod && patch.installMethod === undefined) Object.assign(patch, { installMethod: method });
}

export function apiRouter(deps: ApiDeps): Router {
  const { clusters, machines, events } = deps.inventory;
  const r = Router();
  const json = express.json({ limit: '1mb', strict: true });
  const csv = express.text({ type: ['text/csv', 'text/plain', 'application/csv'], limit: '5mb' });

  const auth = { tokens: deps.inventory.tokens, adminToken: deps.adminToken, queryTokenAllowed: (req: Request) => req.method === 'GET' && req.path === STREAM_PATH };
  const stream = deps.eventStream ?? createEventStream({ events, machines });

  // ── the console's sign-in: before authentication, since it is how a browser gets authenticated
  r.post('/session', json, async (req, res) => {
    parseWith(emptyQuerySchema, req.query, 'query');
    const { token } = parseWith(sessionSchema, req.body);
    const who = await principalOf(token, auth);
    if (!who) throw new AppError('unauthorized', 'ERR_UNAUTHORIZED', 'the API token is unknown or revoked');
    res.cookie(SESSION_COOKIE, token, { httpOnly: true, sameSite: 'strict', secure: req.secure, path: '/' });
    res.json({ name: who.name, role: who.role });
  });
  r.delete('/session', (_req, res) => {
    res.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: 'strict', path: '/' });
    res.status(204).end();
  });

  r.use(authenticate(auth));

  // Without a JSON content type express.json() leaves no body; say so instead of "field required".
  const jsonBody: RequestHandler[] = [
    json,
    (req, _res, next) => {
      if (req.body === undefined) return next(new AppError('unsupported-media-type', 'ERR_CONTENT_TYPE', 'send a JSON body with Content-Type: application/json', 'content-type'));
      next();
    },
  ];

  const route = (method: ApiRoute['method'], path: string, role: TokenRole, ...handlers: RequestHandler[]): void => {
    r[method](path, requireRole(role), ...handlers);
  };
  const noQuery: RequestHandler = (req, _res, next) => {
    parseWith(emptyQuerySchema, req.query, 'query');
    next();
  };

  async function loadCluster(name: string): Promise<Cluster> {
    const c = await clusters.get(parseWith(clusterNameSchema, name, 'name'));
    if (!c) throw notFound('ERR_UNKNOWN_CLUSTER', `no cluster named "${name}"`);
    return c;
  }
  async function loadMachine(req: Request): Promise<Machine> {
    const mac = pathMac(req);
    const m = await machines.get(mac);
    if (!m) throw notFound('ERR_UNKNOWN_MACHINE', `no machine with MAC ${mac}`);
    return m;
  }

  // ── clusters ──────────────────────────────────────────────────────────────
  const vipAllowed = async (vip: string | null | undefined, cluster: string, endpoint: string | null | undefined): Promise<void> => {
    if (!vip) return;
    if (endpoint && endpoint !== `${vip}:6443`) throw invalid('ERR_VALIDATION', `with a vip the control-plane endpoint is ${vip}:6443; clear controlPlaneEndpoint`, 'controlPlaneEndpoint');
    const problem = await deps.checkVip?.(vip, cluster);
    if (problem) throw problem.taken ? conflict('ERR_VIP_TAKEN', `vip ${problem.reason}`, 'vip') : invalid('ERR_VIP', `vip ${problem.reason}`, 'vip');
  };
  route('post', '/clusters', 'admin', noQuery, ...jsonBody, async (req, res) => {
    const body = parseWith(newClusterSchema, req.body);
    await vipAllowed(body.vip, body.name, body.controlPlaneEndpoint);
    const c = await clusters.create({
      ...body,
      podSubnet: body.podSubnet ?? DEFAULT_POD_SUBNET[body.cni],
      serviceSubnet: body.serviceSubnet ?? DEFAULT_SERVICE_SUBNET,
    });
    res.status(201).location(`/api/v1/clusters/${c.name}`).json(presentCluster(c, []));
  });
  route('get', '/clusters', 'viewer', noQuery, async (_req, res) => {
    const byCluster = new Map<string, PlanMachine[]>();
    for (const m of await machines.planFacts()) {
      if (m.cluster === null) continue;
      const members = byCluster.get(m.cluster);
      if (members) members.push(m);
      else byCluster.set(m.cluster, [m]);
    }
    res.json((await clusters.list()).map((c) => presentCluster(c, byCluster.get(c.name) ?? [])));
  });
  route('get', '/clusters/:name', 'viewer', noQuery, async (req, res) => {
    const c = await loadCluster(String(req.params['name']));
    const members = await machines.list({ cluster: c.name });
    res.json({
      ...presentCluster(c, members),
      machines: members.map(presentMachine),
      steps: deps.clusterDetail ? await deps.clusterDetail.steps(c, members) : [],
      ...(deps.clusterDetail?.detail ? await deps.clusterDetail.detail(c, members) : {}),
    });
  });
  route('patch', '/clusters/:name', 'admin', noQuery, ...jsonBody, async (req, res) => {
    const c = await loadCluster(String(req.params['name']));
    const patch = parseWith(clusterPatchSchema, req.body);
    checkInstallMethod(c, patch);
    guardClusterChange(c, patch, await machines.list({ cluster: c.name }));
    if (patch.vip !== undefined && patch.vip !== c.vip) await vipAllowed(patch.vip, c.name, patch.controlPlaneEndpoint === undefined ? c.controlPlaneEndpoint : patch.controlPlaneEndpoint);
    const updated = await clusters.update(c.name, patch);
    res.json(presentCluster(updated, await machines.list({ cluster: c.name })));
  });
  route('delete', '/clusters/:name', 'admin', noQuery, async (req, res) => {
    const c = await loadCluster(String(req.params['name']));
    await clusters.delete(c.name);
    res.status(204).end();
  });

  // ── machines ──────────────────────────────────────────────────────────────
  route('post', '/machines/import', 'admin', csv, async (req, res) => {
    const { mode } = parseWith(importQuerySchema, req.query, 'query');
    if (typeof req.body !== 'string') throw new AppError('unsupported-media-type', 'ERR_CONTENT_TYPE', 'send the CSV with Content-Type: text/csv', 'content-type');
    const { rows, delimiter } = parseMachinesSheet(req.body);
    const warnings = await guardPlacements(machines, clusters, rows);
    const results = mode === 'upsert' ? await machines.upsertAll(rows) : (await machines.importAll(rows)).map((machine) => ({ machine, outcome: 'created' as const }));
    const count = (o: string): number => results.filter((r) => r.outcome === o).length;
    res.status(201).json({
      imported: count('created') + count('updated'),
      created: count('created'),
      updated: count('updated'),
      unchanged: count('unchanged'),
      delimiter,
      machines: results.map((r) => presentMachine(r.machine)),
      warnings,
    });
  });
  route('patch', '/machines', 'admin', noQuery, ...jsonBody, async (req, res) => {
    const { macs, patch } = parseWith(bulkMachinePatchSchema, req.body);
    const unique = [...new Set(macs)];
    // The same cluster rules as one machine's PATCH, for the whole selection at once.
    const placements = [];
    for (const mac of unique) {
      const m = await machines.get(mac);
      if (m) placements.push({ mac: m.mac, hostname: m.hostname, role: patch.role === undefined ? m.role : patch.role, cluster: patch.cluster === undefined ? m.cluster : patch.cluster });
    }
    const warnings = await guardPlacements(machines, clusters, placements);
    const updated = await machines.updateAll(unique, patch, `api:${req.principal?.name ?? 'unknown'}`);
    res.json({ updated: updated.length, machines: updated.map(presentMachine), warnings });
  });
  route('post', '/machines', 'admin', noQuery, ...jsonBody, async (req, res) => {
    const body = parseWith(newMachineSchema, req.body);
    const warnings = await guardPlacements(machines, clusters, [body]);
    const m = await machines.create(body);
    res.status(201).location(`/api/v1/machines/${m.mac}`).json({ ...presentMachine(m), warnings });
  });
  const listCache = createResponseCache(8);
  route('get', '/machines', 'viewer', async (req, res) => {
    const query = parseWith(machineQuerySchema, req.query, 'query');
    // Read before the rows: a write landing in between only makes the entry stale, never wrong.
    const revision = deps.revision?.();
    const key = JSON.stringify(query);
    let response = revision === undefined ? undefined : listCache.get(key, revision);
    if (!response) {
      const { limit, after, ...filter } = query;
      const list = await machines.list(filter, { limit, after });
      const headers: Record<string, string> = { 'Content-Type': 'application/json; charset=utf-8' };
      const last = list[list.length - 1];
      if (limit !== undefined && list.length === limit && last) {
        // RFC 8288 paging: the body stays a plain array, the next page's URL rides in the header.
        const next = new URLSearchParams(Object.entries(filter).filter((e): e is [string, string] => e[1] !== undefined));
        next.set('limit', String(limit));
        next.set('after', encodeMachineCursor(last));
        headers['Link'] = `</api/v1/machines?${next.toString()}>; rel="next"`;
      }
      // A machine's `boot.stuck` comes with time, not with a write: the body expires then.
      const staleAt = nextStallAt(list);
      response = { body: Buffer.from(JSON.stringify(list.map(presentMachine))), headers, ...(staleAt === null ? {} : { staleAt }) };
      if (revision !== undefined) listCache.set(key, revision, response);
    }
    res.set(response.headers).send(response.body);
  });
  route('get', '/machines/:mac', 'viewer', noQuery, async (req, res) => {
    res.json(presentMachine(await loadMachine(req)));
  });
  route('patch', '/machines/:mac', 'admin', noQuery, ...jsonBody, async (req, res) => {
    const m = await loadMachine(req);
    const patch = parseWith(machinePatchSchema, req.body);
    const placement = { mac: m.mac, hostname: patch.hostname === undefined ? m.hostname : patch.hostname, role: patch.role === undefined ? m.role : patch.role, cluster: patch.cluster === undefined ? m.cluster : patch.cluster };
    const warnings = await guardPlacements(machines, clusters, [placement]);
    res.json({ ...presentMachine(await machines.update(m.mac, patch, 'api')), warnings });
  });
  route('delete', '/machines/:mac', 'admin', async (req, res) => {
    const { force } = parseWith(deleteMachineQuerySchema, req.query, 'query');
    const m = await loadMachine(req);
    // A node of a cluster leaves it first (drain, etcd member, Node object, load balancers).
    const pending = deps.removeFromCluster ? await deps.removeFromCluster(m, { force }) : null;
    if (pending) {
      res.status(202).json(pending);
      return;
    }
    await machines.delete(m.mac);
    res.status(204).end();
  });
  route('get', '/machines/:mac/events', 'viewer', async (req, res) => {
    const m = await loadMachine(req);
    const q = parseWith(eventQuerySchema, req.query, 'query');
    res.json((await events.list({ mac: m.mac, afterId: q.after, limit: q.limit })).map(presentEvent));
  });

  route('get', '/events', 'viewer', async (req, res) => {
    const q = parseWith(siteEventQuerySchema, req.query, 'query');
    if (q.cluster !== undefined) await loadCluster(q.cluster);
    const list = await events.list({ cluster: q.cluster, mac: q.mac, type: q.type, afterId: q.after, beforeId: q.before, limit: q.limit ?? 500, newest: q.after === undefined });
    res.json(list.map(presentEvent));
  });
  route('get', '/racks', 'viewer', noQuery, async (_req, res) => {
    const racks = new Map<string, { machines: number; states: Record<string, number> }>();
    for (const m of await machines.list()) {
      if (m.rack === null) continue;
      const r = racks.get(m.rack) ?? { machines: 0, states: {} };
      r.machines++;
      r.states[m.state] = (r.states[m.state] ?? 0) + 1;
      racks.set(m.rack, r);
    }
    res.json([...racks].sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true })).map(([name, r]) => ({ name, ...r })));
  });

  route('get', '/whoami', 'viewer', noQuery, (req, res) => {
    res.json({ name: req.principal?.name, role: req.principal?.role });
  });
  route('get', STREAM_PATH, 'viewer', stream.handler);

  route('get', '/ssh-key', 'viewer', noQuery, async (_req, res) => {
    res.type('text/plain').send((await deps.sshPublicKey()) + '\n');
  });

  for (const x of deps.extraRoutes ?? []) {
    if (x.method === 'post' || x.method === 'patch') route(x.method, x.path, x.role, noQuery, json, x.handler);
    else route(x.method, x.path, x.role, x.handler);
  }
  return r;
}
