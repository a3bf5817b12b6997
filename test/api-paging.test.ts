import { rmSync } from 'node:fs';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { TEST_ENGINE } from './lib/inventory.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';

/**
 * `GET /machines` returns every machine by default (INTERFACE.md); with `?limit=` it returns a
 * page and, when the page is full, a Link header (rel="next") whose URL carries the opaque
 * `after` cursor and the same filters. Following the links visits every machine once.
 */
const test = suite(`api paging (${TEST_ENGINE}): GET /machines?limit=&after=`);

let rs: RacksmithProcess;
let admin = '';

test.before(async () => {
  rs = await startRacksmith({ env: { RACKSMITH_LOG_LEVEL: 'warn' } });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  const cluster = { ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' };
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'p', ...cluster })).status, 201);
  const lines = ['mac,hostname,role,cluster,rack'];
  for (let i = 0; i < 45; i++) lines.push(`52:54:00:40:00:${i.toString(16).padStart(2, '0')},p${i},worker,p,${i % 2 ? 'odd' : 'even'}`);
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/machines/import', lines.join('\n'), 'text/csv')).status, 201);
});

test.after(async () => {
  await rs?.stop();
  if (rs) rmSync(rs.dataDir, { recursive: true, force: true });
});

async function follow(first: string): Promise<{ macs: string[]; pages: number }> {
  const macs: string[] = [];
  let next: string | null = first;
  let pages = 0;
  while (next && pages < 50) {
    const r = await api(rs.url, admin, 'GET', next);
    assert.is(r.status, 200, r.text);
    macs.push(...r.body.map((m: any) => m.mac));
    pages++;
    const link = r.headers.get('link');
    next = link ? (/^<([^>]+)>; rel="next"$/.exec(link)?.[1] ?? null) : null;
    if (link) assert.ok(next, `malformed Link header: ${link}`);
  }
  return { macs, pages };
}

test('the plain list has everything and no Link header', async () => {
  const r = await api(rs.url, admin, 'GET', '/api/v1/machines');
  assert.is(r.body.length, 45);
  assert.is(r.headers.get('link'), null);
});

test('following rel="next" visits every machine once, in list order, filters kept', async () => {
  const all = (await api(rs.url, admin, 'GET', '/api/v1/machines')).body.map((m: any) => m.mac);
  const paged = await follow('/api/v1/machines?limit=10');
  assert.equal(paged.macs, all);
  assert.is(paged.pages, 5);
  const odd = (await api(rs.url, admin, 'GET', '/api/v1/machines?rack=odd')).body.map((m: any) => m.mac);
  const oddPaged = await follow('/api/v1/machines?rack=odd&limit=7');
  assert.equal(oddPaged.macs, odd);
  // Exactly full last page: one more, empty, page ends it.
  const exact = await follow('/api/v1/machines?limit=15');
  assert.is(exact.pages, 4);
  assert.equal(exact.macs, all);
});

test('bad limit or cursor → 400 naming the parameter', async () => {
  for (const [q, field] of [
    ['limit=0', 'query.limit'],
    ['limit=10001', 'query.limit'],
    ['limit=ten', 'query.limit'],
    ['after=not-a-cursor!', 'query.after'],
    [`after=${Buffer.from('[1,2,3]').toString('base64url')}`, 'query.after'],
    [`after=${Buffer.from('["r",null,"zz"]').toString('base64url')}`, 'query.after'],
    ['limit=1&limit=2', 'query.limit'],
  ] as const) {
    const r = await api(rs.url, admin, 'GET', `/api/v1/machines?${q}`);
    assert.is(r.status, 400, `${q}: ${r.text}`);
    assert.is(r.body.error.field, field, q);
  }
});

test.run();
