import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { startBmcSim, type BmcSim } from './lib/bmc-sim.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { startRedfishFront, type RedfishFront } from './lib/redfish-front.js';
import { startSushy, sushyMissing, type Sushy } from './lib/sushy.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The tech's loop through the real `racksmith serve`: Redfish machines (sushy-emulator behind a
 * SessionService front) and an IPMI one (ipmi_sim with FRU data) side by side — power, the BMC
 * facts a status call records, a MAC the BMC does not report flagged on the machine, the locator
 * LED (API and CLI), rack jobs over both drivers, and BMC failures as 502/504 with the BMC's
 * message.
 */
const test = suite('power: Redfish and IPMI through the API — facts, MAC check, locator LED');
const PASSWORD = 'Tech-Pw-4r2';
const RF_PASSWORD = 'Redfish-Tech-Pw-9';
const A = { mac: '52:54:00:77:20:01', uuid: 'a0000000-0000-4000-8000-000000000001' };
const B = { mac: '52:54:00:77:20:02', uuid: 'a0000000-0000-4000-8000-000000000002' };
const C = { mac: '52:54:00:77:20:03' };
const missing = requirements(['ipmi_sim', 'ipmitool', 'mkfifo']) ?? sushyMissing();
if (missing && process.env['CI'] === 'true') throw new Error(`under CI nothing may skip: ${missing}`);

let rs: RacksmithProcess;
let sushy: Sushy;
let front: RedfishFront;
let sim: BmcSim;
let admin = '';
const texts: string[] = [];

async function call(method: string, path: string, body?: unknown) {
  const r = await api(rs.url, admin, method, `/api/v1${path}`, body);
  texts.push(r.text);
  return r;
}
const system = async (uuid: string): Promise<any> => (await sushy.get(`/redfish/v1/Systems/${uuid}`)).json;

test.before(async () => {
  if (missing) return;
  // A's BMC reports A's MAC; B's BMC reports a MAC that is not B's (the cable went to the wrong port).
  sushy = await startSushy({ users: { admin: RF_PASSWORD }, fake: [{ uuid: A.uuid, name: 'a', nics: [A.mac, '52:54:00:77:20:a1'] }, { uuid: B.uuid, name: 'b', nics: ['52:54:00:77:20:99'] }] });
  front = await startRedfishFront({ upstream: sushy.url, sessions: true, etags: true });
  sim = await startBmcSim({ name: 'tech', password: PASSWORD, fru: { manufacturer: 'Acme Servers', product: 'R640-X', serial: 'SN-000123' } });
  rs = await startRacksmith({ env: { RACKSMITH_POWER_TIMEOUT_SECONDS: '6', RACKSMITH_RACK_POWER_DELAY_SECONDS: '0' } });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await call('POST', '/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  const rf = (systemId: string) => ({ driver: 'redfish', address: front.url, username: 'admin', password: RF_PASSWORD, systemId });
  for (const [m, bmc, n] of [
    [A.mac, rf(A.uuid), 1],
    [B.mac, rf(B.uuid), 2],
    [C.mac, { driver: 'ipmi', address: '127.0.0.1', port: sim.port, username: 'admin', password: PASSWORD, cipherSuite: 3 }, 3],
  ] as const) {
    const r = await call('POST', '/machines', { mac: m, hostname: `t${n}`, role: 'worker', cluster: 'lab', rack: 'rt', bmc });
    assert.is(r.status, 201, r.text);
  }
});

test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
  await front?.stop();
  await sushy?.stop();
  await sim?.stop();
});

test('a Redfish BMC is stored with its options and presented without its password', async () => {
  if (missing) return skipNote('tech API', missing);
  const m = (await call('GET', `/machines/${A.mac}`)).body;
  assert.equal(m.bmc, { driver: 'redfish', address: front.url, port: null, username: 'admin', cipherSuite: null, passwordSet: true, systemId: A.uuid, verifyTls: true, tlsFingerprint: null, solCapture: null });
  const bad = await call('PATCH', `/machines/${C.mac}`, { bmc: { driver: 'ipmi', address: '127.0.0.1', username: 'admin', tlsFingerprint: 'AA:'.repeat(31) + 'AA' } });
  assert.is(bad.status, 400);
  assert.match(bad.text, /tlsFingerprint is a Redfish setting/);
  const bad2 = await call('PATCH', `/machines/${A.mac}`, { bmc: { driver: 'redfish', address: 'https://bmc/x/y', username: 'admin' } });
  assert.is(bad2.status, 400);
});

test('status records the BMC facts; the MAC check flags the machine whose BMC does not report it', async () => {
  if (missing) return skipNote('tech API', missing);
  const a = await call('POST', `/machines/${A.mac}/power`, { action: 'status' });
  assert.is(a.status, 200, a.text);
  assert.is(a.body.state, 'off');
  const ma = (await call('GET', `/machines/${A.mac}`)).body;
  assert.is(ma.bmcFacts.source, 'redfish');
  assert.is(ma.bmcFacts.manufacturer, 'Sushy Emulator');
  assert.ok(ma.bmcFacts.nics.includes(A.mac));
  assert.is(ma.bmcFacts.macReported, true);
  assert.is((await call('POST', `/machines/${B.mac}/power`, { action: 'status' })).status, 200);
  const mb = (await call('GET', `/machines/${B.mac}`)).body;
  assert.is(mb.bmcFacts.macReported, false);
  const evs = (await call('GET', `/machines/${B.mac}/events`)).body as any[];
  const flag = evs.find((e) => e.type === 'bmc.mac-mismatch');
  assert.ok(flag, 'a bmc.mac-mismatch event');
  assert.match(flag.message, /does not report MAC 52:54:00:77:20:02 .*52:54:00:77:20:99/);
  // IPMI: bmc info and the FRU's product area.
  assert.is((await call('POST', `/machines/${C.mac}/power`, { action: 'status' })).status, 200);
  const mc = (await call('GET', `/machines/${C.mac}`)).body;
  assert.equal({ ...mc.bmcFacts, collectedAt: undefined }, { source: 'ipmi', manufacturer: 'Acme Servers', model: 'R640-X', serial: 'SN-000123', biosVersion: null, firmwareVersion: '9.08', nics: null, collectedAt: undefined, macReported: null });
});

test('locator LED: IPMI chassis identify and Redfish IndicatorLED change on the BMCs; the CLI too', async () => {
  if (missing) return skipNote('tech API', missing);
  const on = await call('POST', `/machines/${C.mac}/identify`, { on: true });
  assert.is(on.status, 200, on.text);
  assert.is(sim.identify(), '0 1', 'forced on until turned off');
  assert.is((await call('POST', `/machines/${C.mac}/identify`, { on: true, seconds: 30 })).status, 200);
  assert.is(sim.identify(), '30 0');
  await rs.cli(['machines', 'identify', C.mac, '--off'], { RACKSMITH_TOKEN: admin });
  assert.is(sim.identify(), '0 0');
  assert.is((await call('POST', `/machines/${A.mac}/identify`, { on: true })).status, 200);
  assert.is((await system(A.uuid)).IndicatorLED, 'Blinking');
  const out = await rs.cli(['machines', 'identify', A.mac, '--off'], { RACKSMITH_TOKEN: admin });
  assert.match(out, /locator LED off/);
  assert.is((await system(A.uuid)).IndicatorLED, 'Off');
  assert.is((await call('POST', `/machines/${A.mac}/identify`, { on: false, seconds: 5 })).status, 400);
  const evs = (await call('GET', `/machines/${C.mac}/events`)).body as any[];
  assert.equal(evs.filter((e) => e.type === 'identify').map((e) => [e.data.on, e.data.outcome]), [[true, 'ok'], [true, 'ok'], [false, 'ok']]);
});

test('a rack power job runs over both drivers; Redfish failures are 502/504 with the BMC message', async () => {
  if (missing) return skipNote('tech API', missing);
  const job = await call('POST', '/racks/rt/power', { action: 'status' });
  assert.is(job.status, 202, job.text);
  let j: any = job.body;
  for (let i = 0; i < 100 && j.state === 'running'; i++) {
    await new Promise((r) => setTimeout(r, 200));
    j = (await call('GET', `/racks/rt/power/${job.body.id}`)).body;
  }
  assert.equal(j.counts.ok, 3, JSON.stringify(j));
  const on = await call('POST', `/machines/${A.mac}/power`, { action: 'on' });
  assert.is(on.status, 200, on.text);
  assert.is(on.body.result, 'on');
  assert.is((await call('PATCH', `/machines/${B.mac}`, { bmc: { driver: 'redfish', address: front.url, username: 'admin', password: 'wrong-one', systemId: B.uuid } })).status, 200);
  const auth = await call('POST', `/machines/${B.mac}/power`, { action: 'status' });
  assert.is(auth.status, 502);
  assert.is(auth.body.error.code, 'ERR_BMC_AUTH');
  assert.is((await call('PATCH', `/machines/${B.mac}`, { bmc: { driver: 'redfish', address: front.url, username: 'admin', password: RF_PASSWORD, systemId: 'gone' } })).status, 200);
  const gone = await call('POST', `/machines/${B.mac}/power`, { action: 'on' });
  assert.is(gone.status, 502);
  assert.match(gone.body.error.message, /no system "gone"/);
  assert.is((await call('PATCH', `/machines/${B.mac}`, { bmc: { driver: 'redfish', address: 'http://127.0.0.1:9', username: 'admin', password: RF_PASSWORD } })).status, 200);
  const dead = await call('POST', `/machines/${B.mac}/power`, { action: 'status' });
  assert.is(dead.status, 504);
  assert.is(dead.body.error.code, 'ERR_BMC_UNREACHABLE');
  for (const t of texts) assert.not.ok(t.includes(RF_PASSWORD) || t.includes(PASSWORD), 'no password in any response');
  assert.not.ok(rs.output().includes(RF_PASSWORD));
});

test.run();
