import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { leanFront, type LeanHandler } from '../server/http/lean.js';
import { AppError } from '../server/lib/errors.js';
import { createMetrics } from '../server/lib/metrics.js';
import { memoryLogger } from './lib/orch-harness.js';

/**
 * The boot script a waiting rack polls is answered before Express (server/http/lean.ts). What
 * Express gives every request must hold there too: request id, access log line, metrics, the
 * same JSON errors, HEAD; and everything that is not a lean route reaches Express untouched.
 */
const test = suite('http lean front');

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

function call(server: Server, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const port = (server.address() as AddressInfo).port;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function serve(handler: LeanHandler): Promise<{ server: Server; logged: () => string; fellThrough: string[]; metrics: ReturnType<typeof createMetrics> }> {
  const { log, text } = memoryLogger();
  const metrics = createMetrics({ processMetrics: false });
  const fellThrough: string[] = [];
  const front = leanFront(new Map([['/boot.ipxe', handler]]), (req, res) => {
    fellThrough.push(`${req.method} ${req.url}`);
    res.end('express');
  }, { log, metrics });
  const server = createServer(front);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, logged: text, fellThrough, metrics };
}

const close = (s: Server): Promise<void> => new Promise((r) => s.close(() => r()));

test('a lean route: its text, no-store, a request id, one access line and the route in the metrics', async () => {
  const seen: unknown[] = [];
  const { server, logged, fellThrough, metrics } = await serve(async (_req, query) => {
    seen.push(query);
    return { type: 'text/plain; charset=utf-8', body: '#!ipxe\necho ä\n' };
  });
  try {
    const r = await call(server, 'GET', '/boot.ipxe?mac=52-54-00-00-00-01&arch=x86_64&arch=arm64', { 'x-request-id': 'tech-42' });
    assert.is(r.status, 200);
    assert.is(r.body, '#!ipxe\necho ä\n');
    assert.is(r.headers['content-type'], 'text/plain; charset=utf-8');
    assert.is(r.headers['content-length'], String(Buffer.byteLength('#!ipxe\necho ä\n')));
    assert.is(r.headers['cache-control'], 'no-store');
    assert.is(r.headers['x-request-id'], 'tech-42');
    // The query as Express's simple parser gives it: repeated keys become an array.
    assert.equal(JSON.parse(JSON.stringify(seen)), [{ mac: '52-54-00-00-00-01', arch: ['x86_64', 'arm64'] }]);
    assert.equal(fellThrough, []);
    const line = logged().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'http');
    assert.ok(line, logged());
    assert.equal([line['reqId'], line['method'], line['path'], line['status'], line['remote']], ['tech-42', 'GET', '/boot.ipxe', 200, '127.0.0.1']);
    assert.match(await metrics.text(), /racksmith_http_requests_total\{method="GET",route="\/boot\.ipxe",status="200"\} 1/);

    // A made-up request id is not taken: a new one is.
    const other = await call(server, 'GET', '/boot.ipxe', { 'x-request-id': 'bad id\twith tabs' });
    assert.match(String(other.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  } finally {
    await close(server);
  }
});

test('HEAD gets the headers and no body; other methods, other paths and longer paths go to Express', async () => {
  const { server, fellThrough } = await serve(async () => ({ type: 'text/plain; charset=utf-8', body: '#!ipxe\n' }));
  try {
    const head = await call(server, 'HEAD', '/boot.ipxe?mac=52-54-00-00-00-01');
    assert.is(head.status, 200);
    assert.is(head.headers['content-length'], '7');
    assert.is(head.body, '');
    for (const [method, path] of [
      ['POST', '/boot.ipxe'],
      ['GET', '/boot.ipxe/x'],
      ['GET', '/BOOT.IPXE'],
      ['GET', '/api/v1/machines'],
    ] as const) {
      assert.is((await call(server, method, path)).body, 'express', `${method} ${path}`);
    }
    assert.equal(fellThrough, ['POST /boot.ipxe', 'GET /boot.ipxe/x', 'GET /BOOT.IPXE', 'GET /api/v1/machines']);
  } finally {
    await close(server);
  }
});

test('errors leave as the API\u2019s JSON errors: an AppError with its status, a fault as a logged 500', async () => {
  let fail: Error = new AppError('invalid', 'ERR_BAD_MAC', 'mac: not a MAC address', 'mac');
  const { server, logged } = await serve(async () => {
    throw fail;
  });
  try {
    const bad = await call(server, 'GET', '/boot.ipxe?mac=zz');
    assert.is(bad.status, 400);
    assert.is(bad.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(JSON.parse(bad.body), { error: { code: 'ERR_BAD_MAC', message: 'mac: not a MAC address', field: 'mac' } });
    assert.is(bad.headers['cache-control'], undefined, 'an error is not a script to keep either way');

    fail = new Error('the disk is on fire at /var/lib/racksmith');
    const fault = await call(server, 'GET', '/boot.ipxe?mac=52-54-00-00-00-01');
    assert.is(fault.status, 500);
    assert.equal(JSON.parse(fault.body), { error: { code: 'ERR_INTERNAL', message: 'internal error; see the server log for the request id' } });
    assert.not.match(fault.body, /fire/);
    const failed = logged().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'request failed');
    assert.is(failed?.['reqId'], fault.headers['x-request-id']);
    assert.match(JSON.stringify(failed?.['err']), /the disk is on fire/);
  } finally {
    await close(server);
  }
});

test.run();
