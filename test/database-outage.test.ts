import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { pgMissing, testPostgres } from './lib/postgres.js';
import { waitFor } from './lib/orch-harness.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { relay, type Relay } from './lib/relay.js';
import { skipNote } from './lib/tools.js';

// racksmith-test: postgres only — what a racksmith does while its shared database restarts or fails over.

/**
 * The real `racksmith serve` on PostgreSQL reached through a relay that plays the database host:
 * a restart (connections reset, then refused), and a host that goes quiet without a reset (a
 * failover that moved its address). Meanwhile the API and boot scripts answer 503 with
 * Retry-After and a reason, never a 500 or a hang; /healthz says "degraded"; the log says it once
 * and says when it is back; everything works again on its own; and SIGTERM still ends the process
 * while the database is silent.
 */
const test = suite('database outage: racksmith on a PostgreSQL that restarts or goes quiet');
const missing = pgMissing();

let rs: RacksmithProcess | null = null;
let proxy: Relay | null = null;

async function health(url: string): Promise<{ status: number; body: { status: string; database?: { engine: string; state: string; since: string | null; reason: string | null } } }> {
  const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: (await res.json()) as never };
}

const count = (text: string, needle: string): number => text.split(needle).length - 1;

test.after(async () => {
  if (rs) {
    await rs.kill9();
    rs.cleanup();
  }
  await proxy?.close();
});

test('a restart and a silent host: 503 with a reason meanwhile, back on its own, and SIGTERM still ends it', async () => {
  const db = await testPostgres();
  proxy = await relay(db.port);
  const url = new URL(await db.newDatabase());
  url.port = String(proxy.port);
  rs = await startRacksmith({ env: { RACKSMITH_DATABASE_URL: url.toString(), RACKSMITH_LOG_LEVEL: 'info', RACKSMITH_INSTANCE_NAME: 'outage' } });
  const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  const cluster = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.29.4', containerRuntime: 'containerd', cni: 'calico' });
  assert.is(cluster.status, 201, cluster.text);
  const machine = await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: '52:54:00:0d:00:01', hostname: 'w1', role: 'worker', cluster: 'lab' });
  assert.is(machine.status, 201, machine.text);
  const ok = await health(rs.url);
  assert.equal([ok.status, ok.body.status, ok.body.database?.engine, ok.body.database?.state], [200, 'ok', 'postgres', 'ok']);

  // ── PostgreSQL restarts: every connection reset, then refused until it is back.
  await db.crash();
  const down = await waitFor('/healthz saying the database is unavailable', async () => {
    const h = await health(rs!.url);
    return h.body.database?.state === 'unavailable' ? h : null;
  }, 10_000, 200);
  assert.is(down.status, 503);
  assert.is(down.body.status, 'degraded');
  assert.ok(down.body.database?.reason, 'says why');
  assert.ok(down.body.database?.since && Date.parse(down.body.database.since) > 0);

  const list = await api(rs.url, admin, 'GET', '/api/v1/machines');
  assert.is(list.status, 503, list.text);
  assert.is(list.body.error.code, 'ERR_DATABASE_UNAVAILABLE');
  assert.is(list.headers.get('retry-after'), '5');
  assert.match(list.body.error.message, /^the database is unavailable \(/);
  assert.not.match(list.text, /127\.0\.0\.1|ECONNREFUSED|\.s\.PGSQL/, 'the database address and the driver stay in the server');
  const write = await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: '52:54:00:0d:00:02', hostname: 'w2', role: 'worker', cluster: 'lab' });
  assert.is(write.status, 503, write.text);
  assert.is(write.body.error.code, 'ERR_DATABASE_UNAVAILABLE');
  // A waiting machine's iPXE poll (answered before Express) gets the same.
  const boot = await fetch(`${rs.url}/boot.ipxe?mac=52:54:00:0d:00:01&platform=efi&arch=x86_64`, { signal: AbortSignal.timeout(15_000) });
  assert.is(boot.status, 503);
  assert.is(boot.headers.get('retry-after'), '5');
  assert.is(((await boot.json()) as { error: { code: string } }).error.code, 'ERR_DATABASE_UNAVAILABLE');

  await db.start();
  await waitFor('/healthz ok again', async () => (await health(rs!.url)).status === 200, 30_000, 200);
  const again = await waitFor('the API answering again', async () => {
    const r = await api(rs!.url, admin, 'GET', '/api/v1/machines');
    return r.status === 200 ? r : null;
  }, 30_000, 200);
  assert.equal((again.body as { mac: string }[]).map((m) => m.mac), ['52:54:00:0d:00:01']);
  const after = await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: '52:54:00:0d:00:02', hostname: 'w2', role: 'worker', cluster: 'lab' });
  assert.is(after.status, 201, after.text);
  const log = rs.output();
  assert.is(count(log, 'the database does not answer'), 1, 'the outage logged once, not per request');
  assert.is(count(log, 'the database answers again'), 1);
  assert.not.match(log, /"level":50[^\n]*request failed/, 'no request logged as a fault during the outage');

  // ── The database host goes quiet: no reset, no refusal, just silence.
  proxy.freeze();
  const quiet = await waitFor('/healthz noticing the silence', async () => {
    const h = await health(rs!.url);
    return h.body.database?.state === 'unavailable' ? h : null;
  }, 30_000, 200);
  assert.is(quiet.status, 503);
  assert.match(quiet.body.database?.reason ?? '', /no answer/);

  // SIGTERM while the database says nothing: the process still ends, and cleanly.
  const started = Date.now();
  const child = rs.child;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  // Bounded here by far more than racksmith's own bounds (each service 12 s, the store a few).
  const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 60_000).unref())]);
  const seconds = (Date.now() - started) / 1000;
  assert.is(code, 0, `${String(code)} after ${seconds.toFixed(1)} s\n${rs.output().slice(-2000)}`);
  assert.match(rs.output(), /"msg":"stopped"/);
  console.log(`  SIGTERM with the database silent: exited 0 after ${seconds.toFixed(1)} s`);
});

if (missing) skipNote('database outage', missing);
else test.run();
