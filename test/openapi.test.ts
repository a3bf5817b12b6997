import { consoleRoutes } from '../server/http/api/serial-console.js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Router } from 'express';
import { apiRouter } from '../server/http/api/router.js';
import { openApiDocument } from '../server/http/api/openapi.js';
import { powerRoutes } from '../server/http/api/power.js';
import { orchestrationRoutes } from '../server/http/api/orchestration-routes.js';
import { clusterChecksRoutes } from '../server/http/api/cluster-checks-routes.js';
import { tempInventory } from './lib/inventory.js';

/** Every route the API serves is in the OpenAPI document, and the document lists nothing else. */
const test = suite('openapi: document and routes agree');

function routesOf(router: Router): string[] {
  const out: string[] = [];
  for (const layer of router.stack as unknown as { route?: { path: string; methods: Record<string, boolean> } }[]) {
    if (!layer.route) continue;
    const path = layer.route.path.replace(/:([A-Za-z]+)/g, '{$1}');
    for (const [method, on] of Object.entries(layer.route.methods)) if (on && method !== '_all') out.push(`${method.toUpperCase()} ${path}`);
  }
  return out.sort();
}

test('routes ⇔ paths', async () => {
  const inv = tempInventory();
  try {
    const unused = async (): Promise<never> => {
      throw new Error('not called');
    };
    const control = { kubeconfig: async () => null, retry: async () => ({ machines: [], steps: [] }) };
    const extraRoutes = [
      ...powerRoutes({ machinePower: unused, reimage: unused, identify: unused, rackPower: unused, rackJob: () => null }),
      ...orchestrationRoutes(control, inv.clusters),
      ...clusterChecksRoutes({ preflight: unused, prefetch: unused }, inv.clusters),
      ...consoleRoutes({ console: unused, detach: unused, attach: unused }),
    ];
    const router = apiRouter({ inventory: inv, sshPublicKey: async () => 'ssh-ed25519 AAAA racksmith', extraRoutes });
    const served = [...routesOf(router), 'GET /openapi.json'].sort();
    const doc = openApiDocument('test') as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).filter((k) => k !== 'parameters').map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    assert.equal(served, documented);
    assert.ok(served.length >= 10);
  } finally {
    await inv.destroy();
  }
});

test('the document is valid JSON with bodies for every POST/PATCH', () => {
  const doc = openApiDocument('test') as { paths: Record<string, Record<string, { requestBody?: unknown }>> };
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if ((method === 'post' || method === 'patch') && !/retry|reimage|preflight|prefetch/.test(path)) assert.ok(op.requestBody, `${method} ${path} has no requestBody`);
    }
  }
  assert.not.throws(() => JSON.parse(JSON.stringify(doc)));
});

test('schemas are OpenAPI 3.0 schema objects: no const, no type arrays, no $schema', () => {
  const doc = openApiDocument('test') as { openapi: string };
  assert.is(doc.openapi, '3.0.3');
  const walk = (v: unknown, at: string): void => {
    if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${at}[${i}]`));
    if (v === null || typeof v !== 'object') return;
    const o = v as Record<string, unknown>;
    assert.not.ok('const' in o, `${at}: const is JSON Schema 2020-12, not OpenAPI 3.0`);
    assert.not.ok('$schema' in o, `${at}: $schema`);
    assert.not.ok(Array.isArray(o['type']), `${at}: a type array (use nullable)`);
    for (const [k, x] of Object.entries(o)) walk(x, `${at}.${k}`);
  };
  walk(doc, '$');
});

test.run();
