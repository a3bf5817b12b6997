import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createApp } from '../server/http/app.js';
import { createEventStream, type EventStream } from '../server/http/event-stream.js';
import { createLogger } from '../server/lib/log.js';
import { createMetrics } from '../server/lib/metrics.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { tempStore, type TempStore } from './lib/inventory.js';
import { openStream } from './lib/sse.js';

/**
 * `GET /api/v1/events/stream` on the real server: events in id order, resume from Last-Event-ID
 * after a disconnect without loss, filters, browser credentials, and a SIGTERM that does not hang
 * on open streams. Then, in-process: a client that stops reading is dropped, not buffered.
 */
const test = suite('event stream: the real server');

let rs: RacksmithProcess;
let admin = '';
let viewer = '';
const STREAM = '/api/v1/events/stream';
const mac = (i: number): string => `52:54:00:5e:00:${i.toString(16).padStart(2, '0')}`;

async function call(token: string | null, method: string, path: string, body?: unknown, type?: string) {
  return api(rs.url, token, method, `/api/v1${path}`, body, type);
}

async function addMachine(i: number, rack: string): Promise<void> {
  const r = await call(admin, 'POST', '/machines', { mac: mac(i), hostname: `s${i}`, role: 'worker', cluster: 'ev', rack });
  assert.is(r.status, 201, r.text);
}

test.before(async () => {
  rs = await startRacksmith();
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  viewer = (await rs.cli(['token', 'create', '--role', 'viewer'])).trim();
});

test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
});

test('no token → 401; the hello names the newest event id', async () => {
  const none = await api(rs.url, null, 'GET', STREAM);
  assert.is(none.status, 401);
  const s = openStream(rs.url + STREAM, viewer);
  const hello = await s.waitFor((e) => e.event === 'hello', 10_000, 'hello');
  assert.type(JSON.parse(hello.data).latestId, 'number');
  s.close();
});

test('events arrive live, in id order, and match the store; a resume after a disconnect loses nothing', async () => {
  const witness = openStream(rs.url + STREAM, viewer);
  const reader = openStream(rs.url + STREAM, viewer);
  await witness.waitFor((e) => e.event === 'hello');
  await reader.waitFor((e) => e.event === 'hello');

  const c = await call(admin, 'POST', '/clusters', { name: 'ev', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  assert.is(c.status, 201);
  for (let i = 1; i <= 10; i++) await addMachine(i, i % 2 ? 'r1' : 'r2');
  await reader.waitFor((e) => e.event === 'message' && JSON.parse(e.data).mac === mac(10), 10_000, 'machine 10');
  reader.close();
  const lastSeen = reader.events.filter((e) => e.event === 'message').at(-1)?.id;
  assert.ok(lastSeen, 'the reader saw events');

  // While the reader is away: more machines, edits and a deletion.
  for (let i = 11; i <= 20; i++) await addMachine(i, 'r3');
  assert.is((await call(admin, 'PATCH', `/machines/${mac(3)}`, { rack: 'r9' })).status, 200);
  assert.is((await call(admin, 'DELETE', `/machines/${mac(4)}`)).status, 204);
  await witness.waitFor((e) => e.event === 'message' && JSON.parse(e.data).type === 'machine.deleted', 10_000, 'the deletion');

  const back = openStream(rs.url + STREAM, viewer, lastSeen);
  await back.waitFor((e) => e.event === 'message' && JSON.parse(e.data).type === 'machine.deleted', 10_000, 'the deletion after resuming');

  const ids = (s: typeof witness) => s.data().map((e) => e.id as number);
  const all = ids(witness);
  for (let i = 1; i < all.length; i++) assert.ok((all[i] ?? 0) > (all[i - 1] ?? 0), `ids increase: ${all[i - 1]} then ${all[i]}`);
  // The reader's events before the drop plus the resumed ones are exactly the witness's, once each.
  assert.equal([...ids(reader), ...ids(back)], all);
  assert.equal(back.events.filter((e) => e.event === 'message')[0]?.id, String(Number(lastSeen) + 1));
  // The stream's events are the store's: compare one machine's history.
  const stored = (await call(viewer, 'GET', `/machines/${mac(3)}/events`)).body.map((e: any) => e.id);
  assert.equal(witness.data().filter((e) => e.mac === mac(3)).map((e) => e.id), stored);
  assert.ok(witness.data().some((e) => e.type === 'cluster.created' || e.cluster === 'ev'), 'cluster events are streamed too');
  witness.close();
  back.close();
});

test('?after= resumes like Last-Event-ID; the header wins over the query', async () => {
  const first = (await call(viewer, 'GET', `/machines/${mac(1)}/events`)).body[0].id as number;
  const a = openStream(`${rs.url}${STREAM}?after=${first - 1}&mac=${mac(1)}`, viewer);
  const got = await a.waitFor((e) => e.event === 'message', 10_000, 'the replayed event');
  assert.is(Number(got.id), first);
  a.close();
  const b = openStream(`${rs.url}${STREAM}?after=0&mac=${mac(1)}`, viewer, String(first));
  await b.waitFor((e) => e.event === 'hello');
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(b.data().every((e) => e.id > first), 'nothing at or before Last-Event-ID');
  b.close();
});

test('filters: ?rack= and ?cluster= and ?mac= keep only their machines; bad filters → 400', async () => {
  const rack = openStream(`${rs.url}${STREAM}?after=0&rack=r1`, viewer);
  const cluster = openStream(`${rs.url}${STREAM}?after=0&cluster=nope`, viewer);
  await addMachine(21, 'r1');
  await addMachine(22, 'r2');
  await rack.waitFor((e) => e.event === 'message' && JSON.parse(e.data).mac === mac(21), 10_000, 'machine 21 in r1');
  const macs = new Set(rack.data().map((e) => e.mac));
  assert.ok(!macs.has(mac(22)), 'r2 machine not in the r1 stream');
  assert.ok(!macs.has(mac(2)), 'r2 machine not in the r1 stream');
  assert.ok(macs.has(mac(1)) && macs.has(mac(5)), 'r1 machines replayed');
  // Machine 3 moved from r1 to r9: the r1 view hears of it leaving.
  assert.ok(rack.data().some((e) => e.mac === mac(3) && e.type === 'machine.updated' && e.data.changes.rack.from === 'r1'), 'the move out of r1 is in the r1 stream');
  // A deleted machine has no row left to say its rack: its event does, so the rack's view hears of it.
  assert.is((await call(admin, 'DELETE', `/machines/${mac(21)}`)).status, 204);
  await rack.waitFor((e) => e.event === 'message' && JSON.parse(e.data).type === 'machine.deleted' && JSON.parse(e.data).mac === mac(21), 10_000, 'the deletion in r1');
  assert.not.ok(rack.data().some((e) => e.type === 'machine.deleted' && e.mac === mac(4)), 'the r2 deletion is not in the r1 stream');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(cluster.data(), []);
  rack.close();
  cluster.close();
  for (const q of ['rack=%20bad', 'mac=zz', 'after=-1', 'colour=red']) {
    const r = await api(rs.url, viewer, 'GET', `${STREAM}?${q}`);
    assert.is(r.status, 400, q);
  }
  const badId = await fetch(rs.url + STREAM, { headers: { authorization: `Bearer ${viewer}`, 'last-event-id': 'x' } });
  assert.is(badId.status, 400);
  await badId.text();
});

test('browsers: ?token= works on the stream only; the sign-in cookie works, and writes by cookie need X-Requested-With', async () => {
  const q = openStream(`${rs.url}${STREAM}?token=${encodeURIComponent(viewer)}`, undefined);
  await q.waitFor((e) => e.event === 'hello');
  q.close();
  const elsewhere = await api(rs.url, null, 'GET', `/api/v1/machines?token=${encodeURIComponent(viewer)}`);
  assert.is(elsewhere.status, 401);

  const bad = await call(null, 'POST', '/session', { token: 'rs_nope' });
  assert.is(bad.status, 401);
  const signIn = await call(null, 'POST', '/session', { token: admin });
  assert.is(signIn.status, 200, signIn.text);
  assert.is(signIn.body.role, 'admin');
  const setCookie = signIn.headers.get('set-cookie') ?? '';
  assert.match(setCookie, /^racksmith_session=/);
  assert.match(setCookie, /HttpOnly/);
  assert.match(setCookie, /SameSite=Strict/);
  const cookie = setCookie.split(';')[0] ?? '';
  const who = await fetch(`${rs.url}/api/v1/whoami`, { headers: { cookie } });
  assert.equal(await who.json(), { name: 'admin token', role: 'admin' });
  const body = JSON.stringify({ name: 'csrf', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  const forged = await fetch(`${rs.url}/api/v1/clusters`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body });
  assert.is(forged.status, 403);
  assert.is(((await forged.json()) as any).error.code, 'ERR_CSRF');
  const real = await fetch(`${rs.url}/api/v1/clusters`, { method: 'POST', headers: { cookie, 'content-type': 'application/json', 'x-requested-with': 'racksmith-console' }, body });
  assert.is(real.status, 201);
  const out = await call(null, 'DELETE', '/session');
  assert.is(out.status, 204);
  assert.match(out.headers.get('set-cookie') ?? '', /racksmith_session=;/);
});

test('the token never reaches the log, even in a stream URL', async () => {
  assert.not.ok(rs.output().includes(viewer), 'viewer token in the log');
  assert.not.ok(rs.output().includes(admin), 'admin token in the log');
});

test('a client that closes its sending side has its stream ended by the server, cleanly', async () => {
  const u = new URL(rs.url);
  const sock = connect(Number(u.port), '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', () => r()));
  let text = '';
  sock.on('data', (d: Buffer) => (text += d.toString('utf8')));
  sock.write(`GET ${STREAM}?token=${viewer} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
  for (let i = 0; i < 100 && !text.includes('event: hello'); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(text, /event: hello/);
  const ended = new Promise<boolean>((r) => {
    sock.once('end', () => r(true));
    setTimeout(() => r(false), 10_000);
  });
  sock.end();
  assert.ok(await ended, 'the server ended the stream');
  assert.match(text, /\r\n0\r\n\r\n$/, 'with the last chunk: ended, not cut');
  sock.destroy();
});

test('SIGTERM with open streams: they end cleanly and the process exits 0 without waiting out the grace period', async () => {
  const a = openStream(rs.url + STREAM, viewer);
  const b = openStream(`${rs.url}${STREAM}?rack=r1`, viewer);
  await a.waitFor((e) => e.event === 'hello');
  await b.waitFor((e) => e.event === 'hello');
  const code = await rs.stop();
  assert.is(code, 0);
  assert.is(await a.ended, 'ended');
  assert.is(await b.ended, 'ended');
  assert.match(rs.output(), /"msg":"stopped"/);
});

test.run();

/** In-process: the per-connection bound and the keep-alive comments, with small limits. */
const local = suite('event stream: bounded buffering');

interface Local {
  server: Server;
  url: string;
  stream: EventStream;
  inv: TempStore;
  metrics: ReturnType<typeof createMetrics>;
}

async function startLocal(opts: { slowClientMs: number; keepAliveMs: number }): Promise<Local> {
  const inv = await tempStore();
  const metrics = createMetrics({ processMetrics: false });
  const stream = createEventStream({ events: inv.events, machines: inv.machines, metrics, ...opts });
  const token = await inv.tokens.create('viewer', 'local');
  const app = createApp({ log: createLogger('silent'), version: 'test', health: () => ({}), inventory: inv, sshPublicKey: async () => '', eventStream: stream });
  const server = createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return { server, url: `http://127.0.0.1:${port}${STREAM}?token=${token.token}`, stream, inv, metrics };
}

async function stopLocal(l: Local): Promise<void> {
  await l.stream.service.stop();
  l.server.closeAllConnections();
  await new Promise<void>((r) => l.server.close(() => r()));
  await l.inv.destroy();
}

local('keep-alive comments flow on an idle stream', async () => {
  const l = await startLocal({ slowClientMs: 30_000, keepAliveMs: 50 });
  try {
    const res = await fetch(l.url);
    const reader = res.body!.getReader();
    let text = '';
    for (let i = 0; i < 20 && !text.includes(': keep-alive'); i++) text += new TextDecoder().decode((await reader.read()).value);
    assert.match(text, /^: keep-alive$/m);
    await reader.cancel();
  } finally {
    await stopLocal(l);
  }
});

local('a client that stops reading is dropped, not buffered; a healthy one gets every event, bursts included', async () => {
  // A stalled client goes when its socket has not drained for 2 s. The healthy reader lives on
  // this test's own event loop: the appends below must never keep it from reading that long.
  const l = await startLocal({ slowClientMs: 2_000, keepAliveMs: 60_000 });
  try {
    const u = new URL(l.url);
    const sock = connect(Number(u.port), '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
    // Read the headers, then never read again.
    await new Promise<void>((r) => sock.once('data', () => r()));
    sock.pause();
    const healthy = openStream(l.url, undefined);
    await healthy.waitFor((e) => e.event === 'hello');
    assert.is(l.stream.clients(), 2);
    const big = 'x'.repeat(8 * 1024);
    let n = 0;
    // Loopback socket buffers take a few MB; keep appending until the server gives up on the reader.
    for (; n < 20_000 && l.stream.clients() > 1; n++) {
      const e = await l.inv.events.append({ type: 'test.bulk', message: big });
      // Bursts of 100 events (0.8 MB); then the healthy reader catches up, so it drains after every
      // burst however slow this machine is, while the stalled one never does.
      if (n % 100 === 99) await healthy.waitFor((m) => m.event === 'message' && Number(m.id) >= e.id, 20_000, 'the healthy client keeps up');
    }
    assert.is(l.stream.clients(), 1, `the stalled client was dropped (after ${n} events of 8 KiB)`);
    const closed = new Promise<boolean>((r) => {
      sock.once('close', () => r(true));
      setTimeout(() => r(false), 5000);
    });
    sock.resume();
    assert.ok(await closed, 'the stalled socket was closed by the server');
    await healthy.waitFor((e) => e.event === 'message' && Number(e.id) >= n, 20_000, 'the healthy client has every event');
    assert.is(healthy.data().length, n);
    assert.match(await l.metrics.text(), /racksmith_event_stream_dropped_total\{reason="slow"\} 1/);
    healthy.close();
  } finally {
    await stopLocal(l);
  }
});

local.run();
