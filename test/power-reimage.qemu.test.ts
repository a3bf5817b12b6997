import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { Store } from '../server/inventory/store.js';
import { startBmcSim, watchPs, type BmcSim } from './lib/bmc-sim.js';
import { buildGuest, type Guest } from './lib/guest/build.js';
import { PxeBed, SERVER_IP } from './lib/pxe.js';
import type { RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — a reimage waits on stored events across a restart; short enough to run twice.

/**
 * Reimage end to end, with racksmith's whole boot chain inside namespaces: an ipmi_sim BMC on the
 * switch namespace whose chassis program runs the machine as a QEMU VM on the bridge. Power on
 * through the API → the VM PXE-boots racksmith's installer (the test initramfs) and ends
 * `ready`; reimage → the BMC's boot device is PXE, the VM starts again → it PXE-boots the
 * installer again with the rotated seed token and ends `ready` again. Evidence: the simulator's
 * state and log, the VM's process and serial console, the machine's events.
 */
const test = suite('qemu: reimage through ipmi_sim → PXE → installer again');
const PASSWORD = 'Pw-reimage-6Qd1';
const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
const BMC_IP = '10.77.0.2';
const VM = { mac: '52:54:00:77:00:21', ip: '10.77.0.21', hostname: 'w-reimage' };
const VM_TIMEOUT_MS = 240_000;
const missing = requirements(['qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'mkfifo', 'dnsmasq', 'cpio', 'gzip', 'apt-get', 'dpkg', 'dropbearkey', 'curl'], { netns: true });

let bed: PxeBed | null = null;
let rs: RacksmithProcess | null = null;
let bmc: BmcSim | null = null;
let store: Store | null = null;
let work = '';
let admin = '';
let guest: Guest;

const api = (method: string, path: string, body?: unknown) => bed!.api(BASE, admin, method, `/api/v1${path}`, body);
const serial = (): string => {
  try {
    return readFileSync(join(bmc!.dir, 'serial.log'), 'latin1');
  } catch {
    return '';
  }
};
async function until<T>(what: string, fn: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what}; serial:\n${serial().slice(-1500)}`);
}

test.before(async () => {
  if (missing) return;
  guest = await buildGuest();
  work = mkdtempSync(join(tmpdir(), 'racksmith-pq-'));
  bed = await new PxeBed('pq').setup();
  await bed.tb.ip(bed.sw, ['addr', 'add', `${BMC_IP}/24`, 'dev', bed.bridge]);
  const tap = bed.tb.name('t1');
  await bed.tb.ip(bed.sw, ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  await bed.tb.ip(bed.sw, ['link', 'set', tap, 'master', bed.bridge]);
  await bed.tb.ip(bed.sw, ['link', 'set', tap, 'up']);
  bmc = await startBmcSim({
    name: 'pqr',
    password: PASSWORD,
    vm: true,
    vmMemoryMiB: 256,
    netns: bed.sw,
    address: BMC_IP,
    vmArgs: ['-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=n0,mac=${VM.mac}`, '-no-reboot'],
  });
});

test.after(async () => {
  await store?.close();
  await rs?.stop();
  rs?.cleanup();
  await bmc?.stop();
  await bed?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('power on installs; reimage sets PXE, starts the VM, and it installs again with a new token', async () => {
  if (missing) return skipNote('reimage in QEMU', missing);
  const artifacts = join(work, 'artifacts');
  mkdirSync(join(artifacts, '22.04'), { recursive: true });
  writeFileSync(join(artifacts, '22.04', 'vmlinuz'), readFileSync(guest.kernel));
  writeFileSync(join(artifacts, '22.04', 'initrd'), readFileSync(guest.initrd));
  rs = await bed!.racksmith(work, artifacts, HTTP_PORT, { RACKSMITH_POWER_TIMEOUT_SECONDS: '20' });
  bed!.raSender();
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  store = await rs.openStore();
  assert.is((await api('POST', '/clusters', { name: 'c22', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  const created = await api('POST', '/machines', { ...VM, role: 'worker', cluster: 'c22', bmc: { driver: 'ipmi', address: BMC_IP, username: 'admin', password: PASSWORD } });
  assert.is(created.status, 201, JSON.stringify(created.body));
  const ps = watchPs(PASSWORD);

  // First install: power on through the API.
  const on = await api('POST', `/machines/${VM.mac}/power`, { action: 'on' });
  assert.is(on.status, 200, JSON.stringify(on.body));
  const firstPid = await until('the VM process', () => bmc!.vmPid(), 30_000);
  await until('the first install', () => /RACKSMITH-GUEST (DONE|FAIL)/.test(serial()), VM_TIMEOUT_MS);
  const first = serial();
  assert.not.match(first, /RACKSMITH-GUEST FAIL/, first.slice(-1500));
  const firstSeed = /RACKSMITH-GUEST SEED subiquity (\S+)/.exec(first)?.[1];
  assert.ok(firstSeed);
  await until('the machine to be ready', async () => (await api('GET', `/machines/${VM.mac}`)).body.state === 'ready', 30_000);
  // The guest powers off at the end: the VM process ends, the BMC reports off.
  await until('the VM to power off', () => bmc!.vmPid() === null, 60_000);
  void firstPid;

  // Reimage.
  const r = await api('POST', `/machines/${VM.mac}/reimage`, {});
  assert.is(r.status, 202, JSON.stringify(r.body));
  assert.is(r.body.removal, 'not-needed');
  assert.is(r.body.powerWas, 'off');
  const secondPid = await until('the VM to start again', () => bmc!.vmPid(), 30_000);
  assert.is(bmc!.boot(), 'pxe');
  assert.match(bmc!.vmCmdline() ?? '', /-boot order=n/);
  const sets = await until('the power-on in the chassis log', () => { const a = bmc!.sets().map((c) => c.args); return a[a.length - 1] === 'set power 1' && a; }, 30_000);
  assert.equal(sets.slice(-2), ['set boot pxe', 'set power 1']);
  await until('the second install', () => /RACKSMITH-GUEST (DONE|FAIL)/.test(serial()), VM_TIMEOUT_MS);
  const second = serial();
  assert.not.match(second, /RACKSMITH-GUEST FAIL/, second.slice(-1500));
  const secondSeed = /RACKSMITH-GUEST SEED subiquity (\S+)/.exec(second)?.[1];
  assert.ok(secondSeed);
  assert.is.not(secondSeed, firstSeed, 'the seed token was rotated');
  assert.ok(secondSeed.includes(`/seed/${await store!.machines.seedToken(VM.mac as never)}/`));
  await until('ready again', async () => (await api('GET', `/machines/${VM.mac}`)).body.state === 'ready', 30_000);
  const events = (await api('GET', `/machines/${VM.mac}/events?limit=10000`)).body as any[];
  const states = events.filter((e) => e.type === 'state').map((e) => e.data.to);
  const at = states.lastIndexOf('reimaging');
  assert.ok(at > 0);
  assert.equal(states.slice(at), ['reimaging', 'provisioning', 'installed', 'ready']);
  assert.equal(events.filter((e) => e.type === 'reimage').map((e) => e.data.step), ['removed-from-cluster', 'next-boot-set', 'power-cycled']);
  void secondPid;
  const watched = await ps.stop();
  assert.equal(watched.leaks, []);
  assert.not.ok(rs.output().includes(PASSWORD));
});

test.run();
