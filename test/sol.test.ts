import { connect, type Server, type Socket } from 'node:net';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { personSolActivate, startBmcSim, uartRelay, type BmcSim } from './lib/bmc-sim.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * Serial console capture against ipmi_sim's real SOL, with a scripted host on the UART (the QEMU
 * suite, sol.qemu, puts a booting VM there): captured while installing, the BMC's one session
 * handed to a person on request and not taken back, asked for again, and carried by a failure.
 */
const test = suite('power: serial console capture over ipmi_sim SOL (scripted host)');
const PASSWORD = 'Sol-Light-Pw-2';
const MAC = '52:54:00:77:30:02';
const missing = requirements(['ipmi_sim', 'ipmitool', 'mkfifo']);

let rs: RacksmithProcess;
let sim: BmcSim;
let admin = '';
let uart: Server[] = [];
let host: Socket | null = null;
let hostTimer: NodeJS.Timeout | null = null;

const call = (method: string, path: string, body?: unknown) => api(rs.url, admin, method, `/api/v1${path}`, body);
const consoleOf = async (): Promise<any> => (await call('GET', `/machines/${MAC}/console`)).body;
async function until<T>(what: string, fn: () => Promise<T | null | false | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`timed out waiting for ${what}; console: ${JSON.stringify(await consoleOf().catch(() => null)).slice(-1500)}`);
}
const personActivates = (): Promise<string> => personSolActivate(sim.port, PASSWORD);

test.before(async () => {
  if (missing) return;
  const relay = await uartRelay();
  uart = relay.servers;
  sim = await startBmcSim({ name: 'soll', password: PASSWORD, sol: `tcp:127.0.0.1:${relay.bmcPort}` });
  // The host: a firmware and kernel talking on COM1, colours and all.
  host = connect(relay.hostPort, '127.0.0.1');
  host.on('error', () => undefined);
  let n = 0;
  hostTimer = setInterval(() => host?.write(n++ % 5 === 0 ? `\x1b[1;33mRACKSMITH-GUEST STEP ${n}\x1b[0m\r\n` : `[ ${(n / 10).toFixed(6)}] kernel line ${n}\r\n`), 200);
  rs = await startRacksmith({ env: { RACKSMITH_SOL_CAPTURE_RACKS: 'r-sol', RACKSMITH_SOL_RETRY_SECONDS: '1' } });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await call('POST', '/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  const r = await call('POST', '/machines', { mac: MAC, hostname: 'soll', role: 'worker', cluster: 'lab', rack: 'r-sol', bmc: { driver: 'ipmi', address: '127.0.0.1', port: sim.port, username: 'admin', password: PASSWORD, cipherSuite: 3 } });
  assert.is(r.status, 201, r.text);
});

test.after(async () => {
  if (hostTimer) clearInterval(hostTimer);
  host?.destroy();
  await rs?.stop();
  rs?.cleanup();
  await sim?.stop();
  for (const u of uart) u.close();
});

test('attach while installing, hand the session to a person, attach again, a failure carries the lines', async () => {
  if (missing) return skipNote('SOL', missing);
  assert.is((await consoleOf()).state, 'off');
  const script = await fetch(`${rs.url}/boot.ipxe?mac=${MAC}&arch=x86_64&platform=pcbios`).then((r) => r.text());
  const token = /\/seed\/([^/\s]+)\//.exec(script)?.[1];
  assert.ok(token);
  const live = await until('lines captured', async () => {
    const c = await consoleOf();
    return c.attached && c.lines.length >= 10 && c;
  });
  assert.ok(live.lines.some((l: any) => l.text === `RACKSMITH-GUEST STEP ${/STEP (\d+)/.exec(l.text)?.[1]}`), 'colours stripped');
  assert.match(await personActivates(), /SOL payload already active on another session/);
  const d = await call('POST', `/machines/${MAC}/console`, { action: 'detach' });
  assert.is(d.body.state, 'detached');
  assert.match(await personActivates(), /SOL Session operational/);
  await new Promise((r) => setTimeout(r, 3000));
  assert.is((await consoleOf()).state, 'detached', 'not taken back');
  assert.is((await call('POST', `/machines/${MAC}/console`, { action: 'attach' })).status, 200);
  await until('attached again', async () => (await consoleOf()).attached);
  const failed = await fetch(`${rs.url}/seed/${token}/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ event_type: 'finish', name: 'subiquity/Install', result: 'FAIL', description: 'disk not found', origin: 'curtin' }) });
  assert.is(failed.status, 200);
  const tail = await until('console.tail', async () => ((await call('GET', `/machines/${MAC}/events`)).body as any[]).find((e) => e.type === 'console.tail'));
  assert.ok(tail.data.lines.length > 5 && tail.data.lines.length <= 200);
  assert.ok(tail.data.lines.some((l: string) => /kernel line/.test(l)));
  assert.is(tail.data.step, 'installer');
  await until('detached after the failure', async () => !(await consoleOf()).attached);
  assert.match(await personActivates(), /SOL Session operational/, 'the slot is free again');
  const events = ((await call('GET', `/machines/${MAC}/events`)).body as any[]).filter((e) => e.type === 'console').map((e) => e.data.state);
  assert.ok(events.includes('attached') && events.includes('detached'), events.join(','));
});

test.run();
