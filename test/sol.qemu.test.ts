import { execFile } from 'node:child_process';
import type { Server } from 'node:net';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { Mac } from '../server/lib/mac.js';
import { personSolActivate, startBmcSim, uartRelay, watchPs, type BmcSim } from './lib/bmc-sim.js';
import { buildGuest, type Guest } from './lib/guest/build.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — the console capture is stored per machine; short enough to run twice.

const run = promisify(execFile);

/**
 * Serial console capture against ipmi_sim, whose SOL is wired to a QEMU machine's serial port
 * (`sol "tcp:…"`; the VM's COM1 listens there). The BMC powers the VM on; the VM boots the test
 * guest, which prints its kernel and init lines and fails to reach its seed. racksmith captures
 * the console while the machine is `provisioning`, shows it through the API, lets a person take
 * the BMC's one SOL session (detach) without taking it back, attaches again on request, and a
 * machine that fails carries the last lines (a `console.tail` event).
 */
const test = suite('qemu: serial console capture over ipmi_sim SOL');
const PASSWORD = 'Sol-Pw-5t8';
const MAC = '52:54:00:77:30:01' as Mac;
const missing = requirements(['qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'mkfifo', 'cpio', 'gzip', 'apt-get', 'dpkg', 'dropbearkey']);

let rs: RacksmithProcess;
let sim: BmcSim;
let ps: ReturnType<typeof watchPs> | null = null;
let uart: Server[] = [];
let guest: Guest;
let admin = '';

const call = (method: string, path: string, body?: unknown) => api(rs.url, admin, method, `/api/v1${path}`, body);
const consoleOf = async (): Promise<any> => (await call('GET', `/machines/${MAC}/console`)).body;
async function until<T>(what: string, fn: () => Promise<T | null | false | undefined>, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what}; console: ${JSON.stringify(await consoleOf().catch(() => null))?.slice(-2000)}`);
}
const personActivates = (): Promise<string> => personSolActivate(sim.port, PASSWORD);

test.before(async () => {
  if (missing) return;
  guest = await buildGuest();
  const relay = await uartRelay();
  uart = relay.servers;
  const { bmcPort, hostPort } = relay;
  // The guest looks for a seed that is not there, prints why, and powers off.
  const vm = `qemu-system-x86_64 -machine pc -accel tcg -m 256 -smp 1 -display none -monitor none -no-reboot \\
    -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,mac=${MAC} \\
    -kernel ${guest.kernel} -initrd ${guest.initrd} -append 'console=ttyS0 ds=nocloud-net;s=http://10.0.2.2:9/seed/x/' \\
    -serial tcp:127.0.0.1:${hostPort},reconnect=1 -name rs-sol -pidfile $D/qemu.pid -daemonize </dev/null >/dev/null 2>>$D/qemu.err`;
  sim = await startBmcSim({ name: 'sol', password: PASSWORD, vm: true, vmCommand: vm, sol: `tcp:127.0.0.1:${bmcPort}` });
  rs = await startRacksmith({ env: { RACKSMITH_POWER_TIMEOUT_SECONDS: '10', RACKSMITH_SOL_CAPTURE_RACKS: 'r-sol', RACKSMITH_SOL_RETRY_SECONDS: '2' } });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await call('POST', '/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  const r = await call('POST', '/machines', { mac: MAC, hostname: 'sol1', role: 'worker', cluster: 'lab', rack: 'r-sol', bmc: { driver: 'ipmi', address: '127.0.0.1', port: sim.port, username: 'admin', password: PASSWORD, cipherSuite: 3 } });
  assert.is(r.status, 201, r.text);
});

test.after(async () => {
  await ps?.stop();
  await rs?.stop();
  rs?.cleanup();
  await sim?.stop();
  for (const u of uart) u.close();
});

test('captured while installing, live in the API; a person takes the slot; a failure carries the lines', async () => {
  if (missing) return skipNote('SOL in QEMU', missing);
  assert.is((await consoleOf()).state, 'off', 'assigned, not installing: nothing attached');
  ps = watchPs(PASSWORD);
  // The boot chain serves the installer (as to the machine's iPXE): the machine is provisioning.
  const script = await fetch(`${rs.url}/boot.ipxe?mac=${MAC}&arch=x86_64&platform=pcbios`).then((r) => r.text());
  const token = /\/seed\/([^/\s]+)\//.exec(script)?.[1];
  assert.ok(token, script);
  assert.is((await call('GET', `/machines/${MAC}`)).body.state, 'provisioning');
  await until('racksmith attached', async () => (await consoleOf()).attached);
  // While racksmith holds the one SOL session, a person's activate is refused by the BMC.
  assert.match(await personActivates(), /SOL payload already active on another session/);
  assert.is((await call('POST', `/machines/${MAC}/power`, { action: 'on' })).status, 200);
  const booted = await until('the guest lines in the capture', async () => {
    const c = await consoleOf();
    return c.lines.some((l: any) => /RACKSMITH-GUEST BOOTED/.test(l.text)) && c;
  });
  assert.ok(booted.lines.every((l: any) => !l.text.includes('\u001b') && !l.text.includes('\r')), 'no control characters');
  const seqs = booted.lines.map((l: any) => l.seq);
  const newer = (await call('GET', `/machines/${MAC}/console?after=${seqs[seqs.length - 1]}`)).body;
  assert.ok(newer.lines.every((l: any) => l.seq > seqs[seqs.length - 1]), 'after= gives only newer lines');

  // The guest gives up on its seed a few seconds after its lease, and powers off: captured here,
  // before the detach, so the line never falls into the window where nobody holds the session.
  await until('the guest giving up on its seed', async () => (await consoleOf()).lines.some((l: any) => /RACKSMITH-GUEST FAIL/.test(l.text)), 180_000);

  // A person asks for the console: racksmith lets go, and the person's own session works.
  const d = await call('POST', `/machines/${MAC}/console`, { action: 'detach' });
  assert.is(d.status, 200, d.text);
  assert.is(d.body.state, 'detached');
  assert.match(await personActivates(), /SOL Session operational/);
  await new Promise((r) => setTimeout(r, 4000)); // two retry periods: racksmith must not take it back
  assert.is((await consoleOf()).state, 'detached');
  assert.ok(booted.lines.length > 0 && (await consoleOf()).lines.length >= booted.lines.length, 'the captured lines stay readable');

  // Asked again, it attaches again (the person is gone).
  const a = await call('POST', `/machines/${MAC}/console`, { action: 'attach' });
  assert.is(a.status, 200, a.text);
  await until('attached again', async () => (await consoleOf()).attached);

  // The installer reports failure (as subiquity's reporting webhook does): the failure carries the console.
  const failed = await fetch(`${rs.url}/seed/${token}/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ event_type: 'finish', name: 'subiquity/Install', result: 'FAIL', description: 'no seed', origin: 'curtin' }) });
  assert.is(failed.status, 200, await failed.text());
  const events = await until('the console.tail event', async () => ((await call('GET', `/machines/${MAC}/events`)).body as any[]).find((e) => e.type === 'console.tail'));
  assert.ok(events.data.lines.length > 3 && events.data.lines.length <= 200);
  assert.ok(events.data.lines.some((l: string) => /RACKSMITH-GUEST FAIL/.test(l)));
  assert.is(events.data.step, 'installer');
  await until('detached after failed', async () => !(await consoleOf()).attached, 20_000);
  // The slot is free for a person again.
  assert.match(await personActivates(), /SOL Session operational/);
  const watched = await ps.stop();
  ps = null;
  assert.equal(watched.leaks, [], 'the BMC password is never on a command line');
  assert.not.ok(rs.output().includes(PASSWORD));
  void run;
});

test.run();
