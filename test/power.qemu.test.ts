import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startBmcSim, watchPs, type BmcSim } from './lib/bmc-sim.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — power state and BMC facts are stored; short enough to run twice.

const run = promisify(execFile);

/**
 * The acceptance with a real VM: an ipmi_sim BMC whose chassis program starts and stops a
 * QEMU VM (TCG, no disk). The API powers it on — the QEMU process appears — reports it on, powers
 * it off — the process is gone; a reimage sets PXE and cycles it — a new QEMU process with
 * `-boot order=n`. Everything is checked on the simulator and the process table, not only in
 * racksmith's answers. One VM; the suite runner runs `*.qemu` suites one at a time (by hand:
 * `flock /tmp/racksmith-heavy.lock node dist/test/power.qemu.test.js`).
 */
const test = suite('power with a QEMU VM behind ipmi_sim');
const PASSWORD = 'Pw-qemu-3Lm8-vm';
const MAC = '52:54:00:77:20:01';
const missing = requirements(['ipmi_sim', 'ipmitool', 'qemu-system-x86_64', 'mkfifo']);

let bmc: BmcSim;
let rs: RacksmithProcess;
let operator = '';
let ps: ReturnType<typeof watchPs> | null = null;

const call = async (method: string, path: string, body?: unknown) => api(rs.url, operator, method, `/api/v1${path}`, body);
async function until<T>(what: string, fn: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}
async function qemuInPs(): Promise<string[]> {
  const { stdout } = await run('ps', ['-eo', 'pid,args']);
  return stdout.split('\n').filter((l) => l.includes('qemu-system-x86_64') && l.includes(`rs-bmcsim-${bmc.name}`));
}

test.before(async () => {
  if (missing) return;
  bmc = await startBmcSim({ name: 'pq1', password: PASSWORD, vm: true });
  rs = await startRacksmith({ env: { RACKSMITH_POWER_TIMEOUT_SECONDS: '20' } });
  const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  operator = (await rs.cli(['token', 'create', '--role', 'operator'])).trim();
  await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'vmlab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  const m = await api(rs.url, admin, 'POST', '/api/v1/machines', {
    mac: MAC,
    hostname: 'vm1',
    role: 'worker',
    cluster: 'vmlab',
    bmc: { driver: 'ipmi', address: '127.0.0.1', port: bmc.port, username: 'admin', password: PASSWORD },
  });
  assert.is(m.status, 201, m.text);
  ps = watchPs(PASSWORD);
});

test.after(async () => {
  await ps?.stop();
  await rs?.stop();
  rs?.cleanup();
  await bmc?.stop();
});

test('power on: the VM process appears; status says on', async () => {
  if (missing) return skipNote('power with QEMU', missing);
  assert.is(bmc.vmPid(), null);
  assert.equal(await qemuInPs(), []);
  const r = await call('POST', `/machines/${MAC}/power`, { action: 'on' });
  assert.is(r.status, 200, r.text);
  const pid = await until('the QEMU process', () => bmc.vmPid());
  assert.match(bmc.vmCmdline() ?? '', /qemu-system-x86_64 .*-accel tcg .*-boot order=c/);
  const lines = await qemuInPs();
  assert.is(lines.length, 1);
  assert.match(lines[0] ?? '', new RegExp(`^\\s*${pid} `));
  const st = await call('POST', `/machines/${MAC}/power`, { action: 'status' });
  assert.is(st.body.state, 'on');
});

test('power off: the VM process is gone; status says off', async () => {
  if (missing) return;
  const pid = bmc.vmPid();
  assert.ok(pid);
  const r = await call('POST', `/machines/${MAC}/power`, { action: 'off' });
  assert.is(r.status, 200, r.text);
  await until('the QEMU process to end', () => !existsSync(`/proc/${pid}`));
  assert.equal(await qemuInPs(), []);
  assert.is((await call('POST', `/machines/${MAC}/power`, { action: 'status' })).body.state, 'off');
});

test('reimage: boot device PXE on the BMC, the VM cycled into a PXE boot', async () => {
  if (missing) return;
  await call('POST', `/machines/${MAC}/power`, { action: 'on' });
  const before = await until('the QEMU process', () => bmc.vmPid());
  assert.is(bmc.boot(), 'default');
  const r = await call('POST', `/machines/${MAC}/reimage`, {});
  assert.is(r.status, 202, r.text);
  assert.is(r.body.powerWas, 'on');
  // The cycle: the old VM ends, the simulator powers on again a second later with the new boot device.
  await until('the old VM to end', () => !existsSync(`/proc/${before}`));
  const after = await until('a new QEMU process', () => bmc.vmPid(), 30_000);
  assert.is.not(after, before);
  assert.is(bmc.boot(), 'pxe');
  assert.match(bmc.vmCmdline() ?? '', /-boot order=n/);
  // The chassis program logs a call when it returns, a moment after QEMU wrote its pid file.
  // ipmitool retransmits a request the BMC is slow to answer (killing QEMU takes a moment), and
  // ipmi_sim may carry out the retransmitted cycle's power-off again: one or more `set power 0`,
  // then the power-on, and nothing else after the boot device.
  const sets = await until('the power-on in the chassis log', () => {
    const all = bmc.sets().map((c) => c.args);
    const i = all.lastIndexOf('set boot pxe');
    const on = all.indexOf('set power 1', i);
    return i >= 0 && on > i && all.slice(i, on + 1);
  });
  assert.is(sets[0], 'set boot pxe');
  assert.is(sets.at(-1), 'set power 1');
  const offs = sets.slice(1, -1);
  assert.ok(offs.length >= 1 && offs.every((c) => c === 'set power 0'), `between the boot device and the power-on: ${JSON.stringify(offs)}`);
  const evs = (await call('GET', `/machines/${MAC}/events`)).body as any[];
  await until('the power-cycled step', async () => ((await call('GET', `/machines/${MAC}/events`)).body as any[]).some((e) => e.type === 'reimage' && e.data.step === 'power-cycled'));
  assert.ok(evs.some((e) => e.type === 'state' && e.data.to === 'reimaging'));
});

test('the password never showed in ps while all this ran, nor in the log', async () => {
  if (missing) return;
  const seen = await ps!.stop();
  ps = null;
  assert.ok(seen.samples > 10);
  assert.ok(seen.ipmitoolLines.length > 0, 'ps caught ipmitool at work');
  assert.equal(seen.leaks, []);
  assert.not.ok(rs.output().includes(PASSWORD));
});

test.run();
