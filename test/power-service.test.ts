import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { silentLogger } from '../server/lib/log.js';
import type { Mac } from '../server/lib/mac.js';
import { NODE_REMOVED_EVENT } from '../server/inventory/reimage.js';
import { createIpmiDriver, type IpmiDriver } from '../server/power/ipmi.js';
import { createBmcGate } from '../server/power/scheduler.js';
import { createPowerService, type PowerService } from '../server/power/service.js';
import { meteredDriver } from '../server/power/metered.js';
import { createMetrics, type MetricsRegistry } from '../server/lib/metrics.js';
import { parsePromText } from './lib/prom-text.js';
import { startBmcSim, type BmcSim } from './lib/bmc-sim.js';
import { tempStore, type TempStore } from './lib/inventory.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The power service in process, on a real store and a real ipmi_sim BMC, with short waits: the
 * reimage paths the HTTP acceptance test does not walk (retry after a failed removal wait, a
 * removal the orchestrator reports as failed) and rack jobs with machines that cannot be powered.
 */
const test = suite('power service: reimage retries, removal failures, rack job edges');
const PASSWORD = 'Pw-svc-4Tz9-bmc';
const missing = requirements(['ipmi_sim', 'ipmitool', 'mkfifo']);

let inv: TempStore;
let bmc: BmcSim;
let driver: IpmiDriver;
let power: PowerService;
let metrics: MetricsRegistry;
const mac = (i: number): Mac => `52:54:00:77:30:0${i}` as Mac;

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}
const steps = async (m: Mac): Promise<string[]> => (await inv.events.list({ mac: m })).filter((e) => e.type === 'reimage').map((e) => String(e.data?.['step']));

test.before(async () => {
  if (missing) return;
  inv = await tempStore();
  bmc = await startBmcSim({ name: 'ps1', password: PASSWORD });
  driver = createIpmiDriver({ ipmitool: 'ipmitool', deadlineMs: 5000, retry: { maxAttempts: 2, baseDelayMs: 100, maxDelayMs: 200 }, gate: createBmcGate(4), log: silentLogger() });
  metrics = createMetrics();
  // The removal wait is also the time the tests have to see a removal request and answer it (on
  // PostgreSQL too, beside other suites): 5 s, as 0.8 s can run out before a process starved of
  // CPU has answered.
  power = createPowerService({ inventory: inv, driver: meteredDriver(driver, metrics), settings: { rackConcurrency: 2, rackDelaySeconds: 0, removalTimeoutMs: 5000, removalPollMs: 100 }, onStopped: () => driver.close() });
  await power.start({ signal: new AbortController().signal, log: silentLogger(), fatal: () => undefined });
  await inv.clusters.create({ name: 'svc', ubuntuRelease: '24.04', kubernetesVersion: '1.31.2', containerRuntime: 'containerd', cni: 'calico' });
  const bmcCfg = { driver: 'ipmi' as const, address: '127.0.0.1', port: bmc.port, username: 'admin', password: PASSWORD, cipherSuite: 3 };
  await inv.machines.create({ mac: mac(1), hostname: 'w1', role: 'worker', cluster: 'svc', rack: 'rs', bmc: bmcCfg });
  await inv.machines.create({ mac: mac(2), hostname: 'w2', role: 'worker', cluster: 'svc', rack: 'rs' });
  await inv.machines.create({ mac: mac(3), hostname: 'w3', role: 'worker', cluster: 'svc', rack: 'rs', bmc: { ...bmcCfg, password: 'wrong-password' } });
  for (const e of ['installer-served', 'installed', 'phoned-home', 'join-started', 'joined'] as const) await inv.machines.transition(mac(1), e, { source: 'test' });
  await inv.machines.recordSighting({ mac: mac(1), firmware: 'efi', source: 'test' });
});

test.after(async () => {
  await power?.stop();
  await bmc?.stop();
  await inv?.destroy();
});

test('a removal that never comes fails the machine; a retry asks again and finishes the reimage', async () => {
  if (missing) return skipNote('power service', missing);
  const r = await power.reimage(mac(1), { force: false, source: 'test' });
  assert.is(r['removal'], 'pending');
  const failed = await until('the removal wait to time out', async () => {
    const m = await inv.machines.get(mac(1));
    return m?.state === 'failed' && m;
  });
  assert.is(failed.failedStep, 'reimage.remove-from-cluster');
  assert.is(failed.failedFrom, 'reimaging');
  assert.equal(await steps(mac(1)), ['remove-from-cluster', 'failed']);
  assert.equal(bmc.sets(), []);

  await inv.machines.transition(mac(1), 'retry', { source: 'test' });
  await until('the second removal request', async () => (await steps(mac(1))).filter((s) => s === 'remove-from-cluster').length === 2);
  await inv.events.append({ mac: mac(1), cluster: 'svc', type: NODE_REMOVED_EVENT, source: 'orchestrator', message: 'removed', data: { reimage: r['reimage'] } });
  await until('the power cycle', async () => (await steps(mac(1))).includes('power-cycled'));
  assert.equal(await steps(mac(1)), ['remove-from-cluster', 'failed', 'remove-from-cluster', 'removed-from-cluster', 'next-boot-set', 'power-cycled']);
  assert.is(bmc.boot(), 'pxe');
  const bootEvent = (await inv.events.list({ mac: mac(1) })).find((e) => e.data?.['step'] === 'next-boot-set');
  assert.is(bootEvent?.data?.['efi'], true, 'the machine was seen booting UEFI');
  assert.match(bootEvent?.message ?? '', /PXE \(UEFI\); warning: the BMC reports legacy/);
});

test('a removal the orchestrator reports as failed fails the reimage with its reason', async () => {
  if (missing) return;
  // Back to joined through the lifecycle, as a reinstall and a rejoin would.
  for (const e of ['installer-served', 'installed', 'phoned-home', 'join-started', 'joined'] as const) await inv.machines.transition(mac(1), e, { source: 'test' });
  const r = await power.reimage(mac(1), { force: false, source: 'test' });
  await until('the removal request', async () => (await inv.events.list({ mac: mac(1) })).some((e) => e.data?.['reimage'] === r['reimage'] && e.data?.['step'] === 'remove-from-cluster'));
  await inv.events.append({ mac: mac(1), cluster: 'svc', type: 'cluster.node-removal-failed', source: 'orchestrator', message: 'etcd said no', data: { reimage: r['reimage'], reason: 'etcdserver: unhealthy cluster' } });
  const m = await until('the failure', async () => {
    const x = await inv.machines.get(mac(1));
    return x?.state === 'failed' && x;
  });
  assert.match(m.failedReason ?? '', /could not remove the node: etcdserver: unhealthy cluster/);
});

test('rack job: a machine without BMC is skipped, a wrong password fails alone, the rest is done', async () => {
  if (missing) return;
  const job = await power.rackPower('rs', { action: 'status', source: 'test' });
  await power.settled();
  const done = power.rackJob('rs', String(job['id'])) as any;
  assert.is(done.state, 'done');
  const by = Object.fromEntries(done.machines.map((m: any) => [m.hostname, m]));
  assert.is(by.w1.state, 'ok');
  assert.is(by.w2.state, 'skipped');
  assert.is(by.w2.error.code, 'ERR_NO_BMC');
  assert.is(by.w3.state, 'failed');
  assert.is(by.w3.error.code, 'ERR_BMC_AUTH');
  assert.equal(done.counts, { total: 3, queued: 0, running: 0, ok: 1, failed: 1, skipped: 1, cancelled: 0 });
  const rackEvents = (await inv.events.list({})).filter((e) => e.type === 'rack.power');
  assert.is(rackEvents.length, 2);
  assert.match(rackEvents[1]?.message ?? '', /rack rs: power status done: 1 ok, 1 failed, 1 skipped/);
  assert.is(power.rackJob('other', String(job['id'])), null);
});

test('every BMC call is timed by driver, action and outcome; the wrong password counts as an auth failure', async () => {
  if (missing) return;
  const m = parsePromText(await metrics.text());
  const calls = m.get('racksmith_bmc_call_duration_seconds')?.samples.filter((x) => x.name.endsWith('_count')) ?? [];
  const count = (action: string, outcome: string): number =>
    calls.find((x) => x.labels['driver'] === 'ipmi' && x.labels['action'] === action && x.labels['outcome'] === outcome)?.value ?? 0;
  assert.ok(count('status', 'ok') >= 1, JSON.stringify(calls));
  assert.ok(count('status', 'failed') >= 1, JSON.stringify(calls));
  const failures = m.get('racksmith_bmc_call_failures_total')?.samples ?? [];
  assert.ok(failures.some((x) => x.labels['action'] === 'status' && x.labels['reason'] === 'auth' && x.value >= 1), JSON.stringify(failures));
  // No label carries an address, a MAC or a host name.
  for (const x of [...calls, ...failures]) assert.not.match(JSON.stringify(x.labels), /127\.0\.0\.1|52:54|w3/);
});

test.run();
