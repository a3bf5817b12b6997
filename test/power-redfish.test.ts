import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { silentLogger } from '../server/lib/log.js';
import { PowerError, type BmcTarget } from '../server/power/driver.js';
import { createRedfishDriver, type RedfishDriver } from '../server/power/redfish/driver.js';
import { createBmcGate, type BmcGate } from '../server/power/scheduler.js';
import { redfishError, startRedfishFront, type RedfishFront } from './lib/redfish-front.js';
import { selfSignedCert, startSushy, sushyMissing, type Sushy } from './lib/sushy.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The Redfish driver against OpenStack's sushy-emulator (fake driver, Basic auth from a bcrypt
 * users file), directly and through a front that adds what real BMCs have and sushy lacks
 * (SessionService, ETags, 202 tasks, LocationIndicatorActive, faults). sushy's own state is the
 * evidence: the power state, boot device and LED it reports afterwards.
 */
const test = suite('power: Redfish driver against sushy-emulator');
const USER = 'admin';
const PASSWORD = 'Redfish-Pw-7c1';
const SYS = { uuid: '1b1e4c1a-2f0e-4a4e-9d55-5a3e7c9a0001', name: 'node1', nics: ['52:54:00:77:00:31', '52:54:00:77:00:32'] };
const SYS2 = { uuid: '1b1e4c1a-2f0e-4a4e-9d55-5a3e7c9a0002', name: 'node2', nics: ['52:54:00:77:00:41'] };
const missing = requirements(['openssl']) ?? sushyMissing();
if (missing && process.env['CI'] === 'true') throw new Error(`under CI nothing may skip: ${missing}`);

let sushy: Sushy;
let tlsSushy: Sushy;
let front: RedfishFront;
let tlsFingerprint = '';
let work = '';
const drivers: RedfishDriver[] = [];

function driver(deadlineMs = 15_000, gate: BmcGate = createBmcGate(4)): RedfishDriver {
  const d = createRedfishDriver({ deadlineMs, retry: { maxAttempts: 2, baseDelayMs: 200, maxDelayMs: 1000 }, gate, log: silentLogger(), sessionIdleMs: 60_000 });
  drivers.push(d);
  return d;
}
const target = (address: string, over: Partial<BmcTarget> = {}): BmcTarget => ({ driver: 'redfish', address, port: 0, username: USER, password: PASSWORD, cipherSuite: null, systemId: SYS.uuid, ...over });
async function failure(p: Promise<unknown>): Promise<PowerError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof PowerError) return err;
    throw err;
  }
  throw new Error('expected a PowerError');
}
async function until<T>(what: string, fn: () => Promise<T | null | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`timed out waiting for ${what}`);
}
const system = async (s: Sushy = sushy, uuid = SYS.uuid): Promise<any> => (await s.get(`/redfish/v1/Systems/${uuid}`)).json;

test.before(async () => {
  if (missing) return;
  work = mkdtempSync(join(tmpdir(), 'rs-redfish-'));
  sushy = await startSushy({ users: { [USER]: PASSWORD }, fake: [SYS, SYS2] });
  front = await startRedfishFront({ upstream: sushy.url, sessions: true, etags: true });
  const cert = await selfSignedCert(work);
  tlsFingerprint = cert.fingerprint;
  tlsSushy = await startSushy({ users: { [USER]: PASSWORD }, fake: [SYS], tls: cert });
});

test.after(async () => {
  for (const d of drivers) await d.close();
  await front?.stop();
  await sushy?.stop();
  await tlsSushy?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('power on, status, off through ComputerSystem.Reset; sushy reports the state', async () => {
  if (missing) return skipNote('Redfish', missing);
  const d = driver();
  const t = target(sushy.url);
  assert.is((await d.status(t)).state, 'off');
  await d.on(t);
  await until('sushy to report On', async () => (await system()).PowerState === 'On');
  assert.is((await d.status(t)).state, 'on');
  await d.cycle(t);
  await until('sushy to be back On after the restart', async () => (await system()).PowerState === 'On');
  await d.off(t);
  await until('sushy to report Off', async () => (await system()).PowerState === 'Off');
  assert.is((await d.status(t)).state, 'off');
  // No SessionService on sushy itself: Basic auth on every request.
  assert.equal(d.connections().map((c) => c.auth), ['basic']);
});

test('one-time boot override: PXE, then UefiHttp, with the ETag as If-Match; read back from sushy', async () => {
  if (missing) return skipNote('Redfish', missing);
  const d = driver();
  const t = target(front.url);
  const before = front.seen().length;
  const info = await d.setNextBoot(t, 'pxe', { efi: true, persistent: false });
  assert.is((await system()).Boot.BootSourceOverrideTarget, 'Pxe');
  const patch = front.seen().slice(before).find((r) => r.method === 'PATCH');
  assert.ok(patch, 'a PATCH went out');
  assert.equal(JSON.parse(patch.body), { Boot: { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once', BootSourceOverrideMode: 'UEFI' } });
  assert.match(String(patch.headers['if-match']), /^W\/"[0-9a-f]{16}"$/);
  // sushy keeps every override "Continuous" (its libvirt heritage): said, not failed.
  assert.match(info.warning ?? '', /BootSourceOverrideEnabled Continuous/);
  const http = await d.setNextBoot(t, 'pxe', { efi: true, persistent: false, http: true });
  const last = front.seen().filter((r) => r.method === 'PATCH').pop();
  assert.is(JSON.parse(last?.body ?? '{}').Boot.BootSourceOverrideTarget, 'UefiHttp');
  // sushy turns UefiHttp without an HttpBootUri into Pxe: accepted with a warning, the chain still netboots.
  assert.match(http.warning ?? '', /set Pxe instead of UefiHttp/);
  await d.setNextBoot(t, 'disk', { efi: true, persistent: false });
  assert.is((await system()).Boot.BootSourceOverrideTarget, 'Hdd');
});

test('a stale ETag (412) is read again and retried once', async () => {
  if (missing) return skipNote('Redfish', missing);
  const d = driver();
  const t = target(front.url);
  front.fault({ method: 'PATCH', path: /\/Systems\/[^/]+$/, status: 412, body: redfishError('The ETag does not match.', 'Base.1.8.PreconditionFailed') });
  await d.setNextBoot(t, 'pxe', { efi: false, persistent: false });
  assert.is((await system()).Boot.BootSourceOverrideTarget, 'Pxe');
});

test('sessions: one created and reused over many calls, re-created after a 401, deleted on close', async () => {
  if (missing) return skipNote('Redfish', missing);
  const d = driver();
  const t = target(front.url);
  const s0 = front.sessions();
  for (let i = 0; i < 5; i++) await d.status(t);
  assert.is(front.sessions().created - s0.created, 1, 'one session for five calls');
  assert.equal(d.connections().map((c) => c.auth), ['session']);
  const basic = front.seen().filter((r) => r.headers['authorization']).length;
  front.expireSessions();
  assert.is((await d.status(t)).state, (await system()).PowerState === 'Off' ? 'off' : 'on');
  assert.is(front.sessions().created - s0.created, 2, 'a new session after the 401');
  assert.is(front.seen().filter((r) => r.headers['authorization']).length, basic, 'never Basic while sessions work');
  await d.close();
  assert.is(front.sessions().open, 0, 'closed: the session was deleted on the BMC');
  assert.ok(front.seen().some((r) => r.method === 'DELETE' && r.path.startsWith('/redfish/v1/SessionService/Sessions/')));
});

test('tasks: a 202 reset is followed to its end; one that never ends is a timeout and the BMC queue moves on', async () => {
  if (missing) return skipNote('Redfish', missing);
  const gate = createBmcGate(2);
  // A task that ends gets the default deadline (beside two other suites, sushy-emulator once
  // took over 4 s for its two polls); the short one is for the task that never ends.
  const d = driver(15_000, gate);
  const short = driver(4000, gate);
  const t = target(front.url);
  front.options.tasks = 2;
  await d.on(t);
  await until('On after the task', async () => (await system()).PowerState === 'On');
  front.options.tasks = 'never';
  const e = await failure(short.off(t));
  assert.is(e.code, 'ERR_BMC_TIMEOUT');
  assert.match(e.message, /did not complete within the 4 s deadline \(task \/taskmon\/\d+, last state Running, 50 %\)/);
  assert.equal(gate.stats(), { running: 0, queued: 0, limit: 2 });
  front.options.tasks = null;
  assert.is((await d.status(t)).state, 'on', 'the same BMC answers the next call');
});

test('errors: wrong password, unknown systemId, malformed JSON, an ExtendedInfo error — each clear', async () => {
  if (missing) return skipNote('Redfish', missing);
  const d = driver(5000);
  const auth = await failure(d.status(target(front.url, { password: 'wrong-password' })));
  assert.is(auth.code, 'ERR_BMC_AUTH');
  assert.match(auth.message, /login of user "admin" refused/);
  const basicAuth = await failure(d.status(target(sushy.url, { password: 'wrong-password' })));
  assert.is(basicAuth.code, 'ERR_BMC_AUTH');
  assert.match(basicAuth.message, /Incorrect username or password/);
  const noSys = await failure(d.status(target(front.url, { systemId: 'no-such-node' })));
  assert.is(noSys.code, 'ERR_BMC_REJECTED');
  assert.match(noSys.message, new RegExp(`no system "no-such-node" \\(it has: .*${SYS.uuid}`));
  const two = await failure(d.status(target(front.url, { systemId: null })));
  assert.match(two.message, /has 2 systems .*set bmc.systemId/);
  front.fault({ method: 'GET', path: /\/Systems\/[^/]+$/, status: 200, body: '{"PowerState": "On", "Boot": ' });
  const garbled = await failure(d.status(target(front.url)));
  assert.is(garbled.code, 'ERR_BMC_OUTPUT');
  assert.match(garbled.message, /not JSON/);
  front.fault({ method: 'GET', path: /\/Systems\/[^/]+$/, status: 200, body: '{"PowerState": 7}' });
  assert.match((await failure(d.status(target(front.url)))).message, /expected a string at ComputerSystem.PowerState/);
  front.fault({ method: 'POST', path: /ComputerSystem\.Reset$/, status: 400, body: redfishError('The action ComputerSystem.Reset cannot run now: the system is in POST.', 'Base.1.8.ActionNotSupported', 'Retry after the system has booted.') });
  const rejected = await failure(d.on(target(front.url)));
  assert.is(rejected.code, 'ERR_BMC_REJECTED');
  assert.match(rejected.message, /answered 400 to POST .*cannot run now.*\(Base.1.8.ActionNotSupported\) Resolution: Retry after the system has booted/);
  front.fault({ method: 'GET', path: /\/Systems\/[^/]+$/, status: 503, body: redfishError('Service busy'), times: 2 });
  const busy = await failure(d.status(target(front.url)));
  assert.is(busy.code, 'ERR_BMC_BUSY');
  assert.is(busy.attempts, 2, 'busy is retried, then given up');
});

test('TLS: a self-signed BMC is refused by default, accepted pinned or unverified; a wrong pin is refused', async () => {
  if (missing) return skipNote('Redfish', missing);
  const d = driver(5000);
  const url = tlsSushy.url;
  const strict = await failure(d.status(target(url)));
  assert.is(strict.code, 'ERR_BMC_TLS');
  assert.match(strict.message, /self.signed|certificate/i);
  assert.is((await d.status(target(url, { tlsFingerprint }))).state, 'off');
  assert.is((await d.status(target(url, { verifyTls: false }))).state, 'off');
  const wrong = await failure(d.status(target(url, { tlsFingerprint: 'AB:'.repeat(31) + 'AB' })));
  assert.is(wrong.code, 'ERR_BMC_TLS');
  assert.match(wrong.message, /is not the pinned one/);
  // HTTPS where the BMC speaks plain HTTP: a clear transport error, not a hang.
  const plain = await failure(d.status(target(sushy.url.replace('http:', 'https:'))));
  assert.ok(['ERR_BMC_TLS', 'ERR_BMC_UNREACHABLE'].includes(plain.code), plain.message);
});

test('locator LED: IndicatorLED on sushy, LocationIndicatorActive on a current BMC; seconds turns it off again', async () => {
  if (missing) return skipNote('Redfish', missing);
  const d = driver();
  const t = target(sushy.url);
  await d.identify(t, true, null);
  assert.is((await system()).IndicatorLED, 'Blinking');
  await d.identify(t, false, null);
  assert.is((await system()).IndicatorLED, 'Off');
  front.options.locationIndicator = true;
  try {
    const before = front.seen().length;
    await d.identify(target(front.url), true, 2);
    assert.equal(JSON.parse(front.seen().slice(before).find((r) => r.method === 'PATCH')?.body ?? '{}'), { LocationIndicatorActive: true });
    assert.is((await system()).IndicatorLED, 'Lit');
    await until('the LED off after 2 s', async () => (await system()).IndicatorLED === 'Off', 10_000);
  } finally {
    front.options.locationIndicator = false;
  }
});

test('facts: manufacturer, BIOS and the NIC MACs the BMC reports', async () => {
  if (missing) return skipNote('Redfish', missing);
  const d = driver();
  const f = await d.facts(target(front.url));
  assert.is(f.facts.source, 'redfish');
  assert.is(f.facts.manufacturer, 'Sushy Emulator');
  assert.equal([...(f.facts.nics ?? [])].sort(), SYS.nics);
});

test.run();
