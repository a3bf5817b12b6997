import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { Mac } from '../server/lib/mac.js';
import { createDeadlineService, installDeadlineFailure, isOverdue } from '../server/seeds/deadline.js';
import { tempStore } from './lib/inventory.js';

/**
 * The install deadline on a real SQLite inventory with a fake clock: a machine provisioning, or
 * installed without a phone-home, longer than the deadline goes `failed` with its last boot step
 * and its installer's last event; one that phoned home in time, or is reimaged, is left alone;
 * an installer served again (a power blip) does not restart the clock.
 */
const test = suite('install deadline: overdue installs fail with the last step and event');

const MIN = 60_000;
const T0 = Date.parse('2026-12-01T10:00:00.000Z');

function fakeClock(): { now: () => Date; advance(ms: number): void } {
  let t = T0;
  return { now: () => new Date(t), advance: (ms) => void (t += ms) };
}

async function bed() {
  const clock = fakeClock();
  const inv = await tempStore({ now: clock.now });
  await inv.clusters.create({ name: 'c', os: 'debian-12', installMethod: 'image', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  const add = async (n: number): Promise<Mac> => {
    const mac = `52:54:00:00:10:0${n}` as Mac;
    await inv.machines.create({ mac, hostname: `m${n}`, role: 'worker', cluster: 'c' });
    return mac;
  };
  const svc = createDeadlineService({ machines: inv.machines, events: inv.events, deadlineMinutes: 60, now: clock.now });
  return { clock, inv, add, svc };
}

test('provisioning past the deadline fails with the last boot step and the last installer event; in time is left alone', async () => {
  const { clock, inv, add, svc } = await bed();
  try {
    const slow = await add(1);
    const quick = await add(2);
    const assigned = await add(3);
    for (const mac of [slow, quick]) await inv.machines.transition(mac, 'installer-served', { source: 'test' });
    await inv.machines.setLastStep(slow, 'installer');
    await inv.events.append({ mac: slow, cluster: 'c', type: 'installer.event', source: 'test', message: 'finish racksmith-agent/disk SUCCESS: /dev/nvme0n1' });
    await inv.events.append({ mac: slow, cluster: 'c', type: 'installer.event', source: 'test', message: 'start racksmith-agent/image: writing the image' });
    await inv.events.append({ mac: slow, cluster: 'c', type: 'dhcp.ack', source: 'test', message: 'not an installer event' });

    clock.advance(59 * MIN);
    assert.equal(await svc.check(), [], 'nothing is overdue before the deadline');
    // The quick one installs and phones home in time.
    await inv.machines.transition(quick, 'installed', { source: 'test' });
    await inv.machines.transition(quick, 'phoned-home', { source: 'test' });
    // An installer served again is the same install: the clock keeps running.
    await inv.machines.transition(slow, 'installer-served', { source: 'test' });
    clock.advance(2 * MIN);

    assert.equal(await svc.check(), [slow]);
    const m = await inv.machines.get(slow);
    assert.is(m?.state, 'failed');
    assert.is(m?.failedFrom, 'provisioning');
    assert.is(m?.failedStep, 'installer');
    assert.match(m?.failedReason ?? '', /^install deadline of 60 min passed: still provisioning after 61 min; last boot step installer; last installer event at 2026-12-01T10:00:00\.000Z: start racksmith-agent\/image: writing the image$/);
    const ev = (await inv.events.list({ mac: slow })).filter((e) => e.type === 'state').at(-1);
    assert.is(ev?.source, 'install-deadline');
    assert.equal((ev?.data as Record<string, unknown>)['lastInstallerEvent'], { at: '2026-12-01T10:00:00.000Z', message: 'start racksmith-agent/image: writing the image' });
    assert.is((await inv.machines.get(quick))?.state, 'ready');
    assert.is((await inv.machines.get(assigned))?.state, 'assigned', 'a machine that never booted is not installing');
    assert.equal(await svc.check(), [], 'a failed machine is not failed again');
  } finally {
    await inv.destroy();
  }
});

test('installed without a phone-home: failed after the deadline, counted from the install\'s start', async () => {
  const { clock, inv, add, svc } = await bed();
  try {
    const mac = await add(1);
    await inv.machines.transition(mac, 'installer-served', { source: 'test' });
    clock.advance(20 * MIN);
    await inv.machines.transition(mac, 'installed', { source: 'test' });
    await inv.machines.setLastStep(mac, 'installed');
    clock.advance(39 * MIN);
    assert.equal(await svc.check(), []);
    clock.advance(2 * MIN);
    assert.equal(await svc.check(), [mac]);
    const m = await inv.machines.get(mac);
    assert.is(m?.failedFrom, 'installed');
    assert.match(m?.failedReason ?? '', /installed, but no phone-home after 61 min; last boot step installed; no installer event/);
  } finally {
    await inv.destroy();
  }
});

test('a reimage starts a new install and a new clock', async () => {
  const { clock, inv, add, svc } = await bed();
  try {
    const mac = await add(1);
    await inv.machines.transition(mac, 'installer-served', { source: 'test' });
    clock.advance(50 * MIN);
    await inv.machines.transition(mac, 'reimage', { source: 'test' });
    await inv.machines.transition(mac, 'installer-served', { source: 'test' });
    clock.advance(30 * MIN);
    assert.equal(await svc.check(), []);
    assert.is((await inv.machines.get(mac))?.installStartedAt, new Date(T0 + 50 * MIN).toISOString());
  } finally {
    await inv.destroy();
  }
});

test('the pure parts: overdue only while installing; the failure report carries console lines when given', () => {
  const base = { mac: '52:54:00:00:00:01' as Mac, installStartedAt: '2026-12-01T10:00:00.000Z', stateChangedAt: '2026-12-01T10:30:00.000Z', lastStep: 'ipxe' };
  const now = new Date(T0 + 61 * MIN);
  assert.ok(isOverdue({ ...base, state: 'provisioning' }, now, 60 * MIN));
  assert.not.ok(isOverdue({ ...base, state: 'provisioning' }, new Date(T0 + 59 * MIN), 60 * MIN));
  for (const state of ['assigned', 'ready', 'joined', 'failed', 'reimaging'] as const) assert.not.ok(isOverdue({ ...base, state }, now, 60 * MIN), state);
  // Without a recorded start (a machine from before the migration), its state's start counts.
  assert.not.ok(isOverdue({ ...base, installStartedAt: null, state: 'provisioning' }, now, 60 * MIN));
  const r = installDeadlineFailure({ machine: { ...base, state: 'provisioning' }, lastInstallerEvent: null, deadlineMinutes: 60, now, consoleLines: ['Loading Linux 6.1.0 ...', 'Kernel panic'] });
  assert.is(r.step, 'ipxe');
  assert.equal(r.data['console'], ['Loading Linux 6.1.0 ...', 'Kernel panic']);
});

test('the service checks on its own timer and stops cleanly', async () => {
  const clock = fakeClock();
  const inv = await tempStore({ now: clock.now });
  try {
    await inv.clusters.create({ name: 'c', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
    const mac = '52:54:00:00:10:09' as Mac;
    await inv.machines.create({ mac, hostname: 'm9', role: 'worker', cluster: 'c' });
    await inv.machines.transition(mac, 'installer-served', { source: 'test' });
    clock.advance(2 * MIN);
    const svc = createDeadlineService({ machines: inv.machines, events: inv.events, deadlineMinutes: 1, now: clock.now, checkEveryMs: 20 });
    const ctl = new AbortController();
    await svc.start({ signal: ctl.signal, log: { info() {}, warn() {}, error() {}, debug() {}, fatal() {}, trace() {}, child() { return this; } } as never, fatal() {} });
    for (let i = 0; i < 100 && (await inv.machines.get(mac))?.state !== 'failed'; i++) await new Promise((r) => setTimeout(r, 20));
    assert.is((await inv.machines.get(mac))?.state, 'failed');
    assert.is(svc.health().detail?.['failed'], 1);
    await svc.stop();
    assert.is(svc.health().state, 'stopped');
  } finally {
    await inv.destroy();
  }
});

test.run();
