import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { Express, Router } from 'express';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createApp } from '../server/http/app.js';
import { consoleRoutes } from '../server/http/api/serial-console.js';
import { clusterChecksRoutes } from '../server/http/api/cluster-checks-routes.js';
import { consoleRouter } from '../server/http/console.js';
import { machineRouter, type MachineRouterDeps } from '../server/http/machine-router.js';
import { metricsRouter } from '../server/http/metrics.js';
import { openApiDocument } from '../server/http/api/openapi.js';
import { powerRoutes } from '../server/http/api/power.js';
import { orchestrationRoutes } from '../server/http/api/orchestration-routes.js';
import { silentLogger } from '../server/lib/log.js';
import { createMetrics } from '../server/lib/metrics.js';
import { tempStore } from './lib/inventory.js';
import { api } from './lib/racksmith.js';

/**
 * The OpenAPI document: valid OpenAPI 3.1 (checked by an OpenAPI validator, not by us); every
 * route the express app registers — API, /healthz, /metrics, the console page and the boot path
 * — is in it and it lists nothing else; every operation has an operationId, a 2xx answer and its
 * errors; and real answers of a running app validate against the document's response schemas.
 */
const test = suite('openapi: a valid document, generated from the schemas, of every route the app serves');

type Doc = { openapi: string; paths: Record<string, Record<string, { operationId?: string; responses?: Record<string, { content?: Record<string, { schema?: unknown }> }> }>>; components: { schemas: Record<string, unknown> } };
const doc = openApiDocument('test') as unknown as Doc;
const METHODS = ['get', 'post', 'patch', 'put', 'delete'];

const inv = await tempStore();
const unused = async (): Promise<never> => {
  throw new Error('not called');
};

/** The app as main.ts builds it: every router, with fakes behind the ones this test does not call. */
function fullApp(): Express {
  const metrics = createMetrics();
  return createApp({
    log: silentLogger(),
    version: 'test',
    health: () => ({ http: { state: 'serving' } }),
    inventory: inv,
    sshPublicKey: async () => 'ssh-ed25519 AAAA racksmith',
    machineRouter: machineRouter({ machines: inv.machines, clusters: inv.clusters, events: inv.events, now: () => new Date() } as unknown as MachineRouterDeps),
    rootRouters: [metricsRouter(metrics), consoleRouter()],
    metrics,
    extraRoutes: [
      ...powerRoutes({ machinePower: unused, reimage: unused, identify: unused, rackPower: unused, rackJob: () => null, powerJob: unused, job: () => null }),
      ...consoleRoutes({ console: unused, detach: unused, attach: unused }),
      ...orchestrationRoutes({ kubeconfig: async () => null, retry: async () => ({ machines: [], steps: [] }), startUpgrade: unused, controlUpgrade: unused }, inv.clusters),
      ...clusterChecksRoutes({ preflight: unused, prefetch: unused }, inv.clusters),
    ],
  });
}

interface Served {
  readonly method: string;
  readonly path: string | RegExp;
}

/** Every route in the app's router tree, with the mount paths of the routers it sits in. */
function routesOf(router: Router, prefix = ''): Served[] {
  const out: Served[] = [];
  for (const layer of router.stack as unknown as { route?: { path: string | RegExp; methods: Record<string, boolean> }; handle: { stack?: unknown }; rawPath?: string; slash?: boolean }[]) {
    if (layer.route) {
      // A route may have several paths (an array of strings and patterns).
      for (const p of Array.isArray(layer.route.path) ? (layer.route.path as (string | RegExp)[]) : [layer.route.path]) {
        for (const [method, on] of Object.entries(layer.route.methods)) {
          if (on && method !== '_all') out.push({ method, path: typeof p === 'string' ? prefix + p : p });
        }
      }
    } else if (layer.handle.stack) {
      out.push(...routesOf(layer.handle as unknown as Router, layer.slash || !layer.rawPath ? prefix : prefix + layer.rawPath));
    }
  }
  return out;
}

/** `/api/v1/machines/{mac}` with a sample value in each parameter, to test against a RegExp route. */
const sample = (path: string): string => path.replace(/\{[^}]+\}/g, 'a1');

test('an OpenAPI validator accepts the document as OpenAPI 3.1', async () => {
  const validator = new Validator();
  const res = await validator.validate(JSON.parse(JSON.stringify(doc)));
  assert.ok(res.valid, JSON.stringify(res.errors, null, 2)?.slice(0, 3000));
  assert.is(validator.version, '3.1');
});

test('every route the express app registers is in the document, and nothing else is', () => {
  const app = fullApp();
  const served = routesOf((app as unknown as { router: Router }).router);
  assert.ok(served.length >= 35, `only ${served.length} routes found`);
  const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).filter((k) => METHODS.includes(k)).map((m) => `${m.toUpperCase()} ${path}`));
  const matched = new Set<string>();
  const missing: string[] = [];
  for (const r of served) {
    const key =
      typeof r.path === 'string'
        ? `${r.method.toUpperCase()} ${r.path.replace(/:([A-Za-z]+)/g, '{$1}')}`
        : documented.find((d) => d.startsWith(`${r.method.toUpperCase()} `) && (r.path as RegExp).test(sample(d.slice(d.indexOf(' ') + 1))));
    if (key && documented.includes(key)) matched.add(key);
    else missing.push(`${r.method.toUpperCase()} ${String(r.path)}`);
  }
  assert.equal(missing, [], 'served but not in the document');
  assert.equal(documented.filter((d) => !matched.has(d)), [], 'in the document but not served');
  for (const must of ['GET /healthz', 'GET /metrics', 'GET /api/v1/machines', 'POST /api/v1/power/jobs', 'GET /api/v1/events', 'GET /boot.ipxe']) assert.ok(documented.includes(must), must);
});

test('every operation has a unique operationId, a 2xx answer with its schema, and JSON error answers', () => {
  const ids = new Set<string>();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if (!METHODS.includes(method)) continue;
      const where = `${method.toUpperCase()} ${path}`;
      assert.ok(op.operationId && /^[a-z][A-Za-z]+$/.test(op.operationId), `${where}: operationId`);
      assert.not.ok(ids.has(op.operationId as string), `${where}: duplicate operationId ${op.operationId}`);
      ids.add(op.operationId as string);
      const responses = Object.entries(op.responses ?? {});
      const ok = responses.filter(([s]) => /^2\d\d$/.test(s));
      assert.ok(ok.length > 0, `${where}: no 2xx answer`);
      for (const [s, r] of ok) if (s !== '204') assert.ok(Object.values(r.content ?? {})[0]?.schema, `${where} ${s}: no schema`);
      for (const [s, r] of responses.filter(([x]) => /^[45]\d\d$/.test(x))) assert.equal(r.content?.['application/json']?.schema, { $ref: '#/components/schemas/Error' }, `${where} ${s}`);
    }
  }
});

test('answers of a running app validate against the document\u2019s response schemas', async () => {
  const app = fullApp();
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  // Server and client share this process: compiling a response schema blocks both, and on a
  // starved core for longer than Node's 5 s keep-alive, so the server's idle timer fired just
  // after the client had sent its next request on that connection (ECONNRESET, reproduced at 5 %
  // of a core). Racksmith's clients are other processes; here the server keeps connections longer.
  server.keepAliveTimeout = 120_000;
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { token } = await inv.tokens.create('admin', 'openapi test');
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema({ $id: 'doc', components: doc.components } as object);
  const check = async (method: string, url: string, path: string, body?: unknown, type = 'application/json'): Promise<unknown> => {
    const res = await api(base, token, method, url, body, type);
    const json: unknown = res.body;
    const op = doc.paths[path]?.[method.toLowerCase()];
    const schema = op?.responses?.[String(res.status)]?.content?.['application/json']?.schema;
    assert.ok(schema, `${method} ${path} answered ${res.status}, which the document does not list: ${JSON.stringify(json)}`);
    const validate = ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components', '"doc#/components')));
    assert.ok(validate(json), `${method} ${url} → ${res.status}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(json).slice(0, 500)}`);
    return json;
  };
  try {
    await check('GET', '/healthz', '/healthz');
    await check('POST', '/api/v1/clusters', '/api/v1/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.30.2', containerRuntime: 'containerd', cni: 'flannel' });
    await check('POST', '/api/v1/machines', '/api/v1/machines', { mac: '52:54:00:0a:00:01', hostname: 'cp1', role: 'control-plane', cluster: 'lab', rack: 'r1', unit: 12, bmc: { driver: 'ipmi', address: '10.0.0.1', username: 'admin', password: 'pw' } });
    await check('POST', '/api/v1/machines/import?mode=upsert', '/api/v1/machines/import', 'mac;hostname;role;cluster;rack\n52:54:00:0a:00:02;w1;worker;lab;r1\n', 'text/csv');
    const bad = (await check('POST', '/api/v1/machines/import', '/api/v1/machines/import', 'mac,hostname,role,cluster\n52:54:00:0a:00:03,w3,master,lab\n', 'text/csv')) as { error: { details: { hint?: string }[] } };
    assert.is(bad.error.details[0]?.hint, 'did you mean control-plane?');
    await check('GET', '/api/v1/machines', '/api/v1/machines');
    await check('GET', '/api/v1/machines/52:54:00:0a:00:01', '/api/v1/machines/{mac}');
    await check('PATCH', '/api/v1/machines', '/api/v1/machines', { macs: ['52:54:00:0a:00:01', '52:54:00:0a:00:02'], patch: { rack: 'r2' } });
    await check('GET', '/api/v1/clusters', '/api/v1/clusters');
    await check('GET', '/api/v1/clusters/lab', '/api/v1/clusters/{name}');
    await check('GET', '/api/v1/racks', '/api/v1/racks');
    await check('GET', '/api/v1/events?cluster=lab', '/api/v1/events');
    await check('GET', '/api/v1/machines/52:54:00:0a:00:01/events', '/api/v1/machines/{mac}/events');
    await check('GET', '/api/v1/whoami', '/api/v1/whoami');
    await check('GET', '/api/v1/machines/52:54:00:0a:00:99', '/api/v1/machines/{mac}');
    await check('DELETE', '/api/v1/clusters/lab', '/api/v1/clusters/{name}');
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test.after(async () => {
  await inv.destroy();
});

test.run();
