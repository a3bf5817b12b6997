import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { silentLogger } from '../server/lib/log.js';
import { PowerError } from '../server/power/driver.js';
import { errorText, parseJson, readEthernetMac, readMembers, readServiceRoot, readSystem, readTask, RedfishDecodeError } from '../server/power/redfish/decode.js';
import { bootPatch, chooseResetType, parseEndpoint } from '../server/power/redfish/decide.js';
import { createRedfishDriver } from '../server/power/redfish/driver.js';
import { createBmcGate } from '../server/power/scheduler.js';
import { mutateBytes, NASTY_STRINGS, Rng, seedFromEnv } from './lib/fuzz.js';

/**
 * Redfish decoding fuzzed: real documents (sushy-emulator's, an iDRAC-like one with
 * LocationIndicatorActive, a Task, an error) mutated byte by byte and structurally; every decoder
 * returns a view or throws RedfishDecodeError, nothing else. Then the whole driver against a BMC
 * that answers random statuses, headers and bodies: every call ends in a PowerError within its
 * deadline, and the BMC gate is empty afterwards (no hung queue).
 */
const test = suite('power: Redfish decoding fuzzed');
const SEED = seedFromEnv(0x20fe);

const SYSTEM = {
  '@odata.id': '/redfish/v1/Systems/1',
  '@odata.etag': 'W/"abc"',
  Id: '1',
  Manufacturer: 'Dell Inc.',
  Model: 'PowerEdge R650',
  SerialNumber: 'CN7016',
  BiosVersion: '1.9.2',
  PowerState: 'On',
  LocationIndicatorActive: false,
  Boot: { BootSourceOverrideEnabled: 'Disabled', BootSourceOverrideTarget: 'None', BootSourceOverrideMode: 'UEFI', 'BootSourceOverrideTarget@Redfish.AllowableValues': ['None', 'Pxe', 'Hdd', 'UefiHttp'] },
  Actions: { '#ComputerSystem.Reset': { target: '/redfish/v1/Systems/1/Actions/ComputerSystem.Reset', 'ResetType@Redfish.AllowableValues': ['On', 'ForceOff', 'ForceRestart', 'PowerCycle'] } },
  EthernetInterfaces: { '@odata.id': '/redfish/v1/Systems/1/EthernetInterfaces' },
};
const ROOT = { '@odata.id': '/redfish/v1/', Systems: { '@odata.id': '/redfish/v1/Systems' }, Links: { Sessions: { '@odata.id': '/redfish/v1/SessionService/Sessions' } } };
const COLLECTION = { Members: [{ '@odata.id': '/redfish/v1/Systems/1' }] };
const TASK = { TaskState: 'Exception', TaskStatus: 'Critical', PercentComplete: 40, Messages: [{ MessageId: 'Base.1.8.InternalError', Message: 'boom', Resolution: 'Retry' }] };
const ERROR = { error: { code: 'Base.1.8.GeneralError', message: 'A general error has occurred.', '@Message.ExtendedInfo': [{ MessageId: 'Base.1.8.PropertyValueNotInList', Message: 'The value Floppy is not in the list.', Resolution: 'Choose another.' }] } };
const NIC = { MACAddress: '52:54:00:12:34:56' };
const DOCS = [SYSTEM, ROOT, COLLECTION, TASK, ERROR, NIC];
const DECODERS: ((v: unknown) => unknown)[] = [readSystem, readServiceRoot, (v) => readMembers(v), readTask, readEthernetMac];

function decodeAll(body: Buffer): void {
  errorText(body); // never throws
  let v: unknown;
  try {
    v = parseJson(body);
  } catch (err) {
    if (err instanceof RedfishDecodeError) return;
    throw err;
  }
  for (const d of DECODERS) {
    try {
      d(v);
    } catch (err) {
      if (!(err instanceof RedfishDecodeError)) throw err;
      assert.ok(err.message.length > 0 && err.at.length > 0);
    }
  }
}

/** A structural mutation: a property replaced by a value of another type or a nasty string. */
function mutateJson(rng: Rng, v: unknown, depth = 0): unknown {
  if (depth > 4 || rng.chance(0.15)) {
    return rng.pick<unknown>([null, 0, -1, Number.POSITIVE_INFINITY, 2 ** 60, true, [], {}, [null], rng.pick(NASTY_STRINGS), { '@odata.id': rng.pick(NASTY_STRINGS) }, 'x'.repeat(rng.int(5000))]);
  }
  if (Array.isArray(v)) return v.map((x) => mutateJson(rng, x, depth + 1));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!rng.chance(0.1)) out[k] = rng.chance(0.5) ? mutateJson(rng, x, depth + 1) : x;
    if (rng.chance(0.1)) out[rng.pick(NASTY_STRINGS)] = 1;
    return out;
  }
  return v;
}

test('the real documents decode as expected', () => {
  const s = readSystem(SYSTEM);
  assert.is(s.powerState, 'On');
  assert.equal(s.led, { kind: 'LocationIndicatorActive', on: false });
  assert.equal(chooseResetType('cycle', s.reset?.allowed ?? null), { type: 'PowerCycle' });
  assert.equal(chooseResetType('off', ['On', 'GracefulShutdown']), { error: 'the BMC offers ResetType On, GracefulShutdown; none of them does "off" (ForceOff)' });
  assert.equal(bootPatch('pxe', { efi: true, persistent: false }, s), { body: { Boot: { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once', BootSourceOverrideMode: 'UEFI' } }, target: 'Pxe' });
  assert.equal(readTask(TASK), { state: 'Exception', done: true, failed: true, percent: 40, messages: ['boom (Base.1.8.InternalError) Resolution: Retry'] });
  assert.is(errorText(Buffer.from(JSON.stringify(ERROR))), 'A general error has occurred.; The value Floppy is not in the list. (Base.1.8.PropertyValueNotInList) Resolution: Choose another.');
  assert.is(readEthernetMac({ PermanentMACAddress: '52-54-00-AB-CD-EF' }), '52:54:00:ab:cd:ef');
  assert.equal(parseEndpoint('https://[fd00::5]:8443/redfish/v1', null), { protocol: 'https', host: 'fd00::5', port: 8443, display: '[fd00::5]:8443' });
  assert.equal(parseEndpoint('bmc1.rack4', 8443), { protocol: 'https', host: 'bmc1.rack4', port: 8443, display: 'bmc1.rack4:8443' });
  assert.ok('error' in parseEndpoint('ftp://bmc', null));
  assert.ok('error' in parseEndpoint('https://user@bmc', null));
});

test('byte and structure mutations of real documents: a view or RedfishDecodeError, never another throw', () => {
  const rng = new Rng(SEED);
  for (let i = 0; i < 20_000; i++) {
    const doc = rng.pick(DOCS);
    let body: Buffer = Buffer.from(JSON.stringify(i % 2 ? mutateJson(rng, doc) : doc));
    for (let k = rng.int(4); k > 0; k--) body = mutateBytes(rng, body);
    try {
      decodeAll(body);
    } catch (err) {
      throw new Error(`seed ${SEED} case ${i}: ${err instanceof Error ? err.stack : String(err)}\nbody: ${body.toString('latin1').slice(0, 400)}`);
    }
  }
});

test('the whole driver against a BMC answering at random: a PowerError each time, and no hung BMC queue', async () => {
  const rng = new Rng(SEED ^ 0x5a5a);
  const bodies = DOCS.map((d) => JSON.stringify(d));
  const server: Server = createServer((req, res) => {
    req.resume();
    const pick = rng.int(10);
    if (pick === 0) return void req.socket.destroy(); // hang up
    if (pick === 1) return; // never answer
    const status = rng.pick([200, 200, 200, 201, 202, 204, 301, 400, 401, 404, 412, 500, 503]);
    const headers: Record<string, string> = { 'Content-Type': rng.chance(0.8) ? 'application/json' : 'text/html' };
    if (rng.chance(0.3)) headers['Location'] = rng.pick(['/taskmon/1', '//evil/x', 'http://[', '/redfish/v1/SessionService/Sessions/1', rng.pick(NASTY_STRINGS).replace(/[^\x21-\x7e]/g, '')]);
    if (rng.chance(0.3)) headers['X-Auth-Token'] = rng.string(rng.int(40));
    if (rng.chance(0.2)) headers['Retry-After'] = rng.pick(['0', '1', '99999', 'soon', '-1']);
    let body: Buffer = Buffer.from(rng.pick(bodies));
    for (let k = rng.int(3); k > 0; k--) body = mutateBytes(rng, body);
    res.writeHead(status, headers);
    res.end(status === 204 ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const gate = createBmcGate(2);
  const driver = createRedfishDriver({ deadlineMs: 1500, retry: { maxAttempts: 2, baseDelayMs: 50, maxDelayMs: 100 }, gate, log: silentLogger() });
  const t = { driver: 'redfish' as const, address: `http://127.0.0.1:${port}`, port: 0, username: 'u', password: 'p', cipherSuite: null, systemId: '1' };
  let ok = 0;
  let failed = 0;
  try {
    const calls = [
      () => driver.status(t),
      () => driver.on(t),
      () => driver.setNextBoot(t, 'pxe', { efi: true, persistent: false }),
      () => driver.identify(t, true, null),
      () => driver.facts(t),
    ];
    for (let i = 0; i < 60; i++) {
      const started = Date.now();
      try {
        await rng.pick(calls)();
        ok++;
      } catch (err) {
        if (!(err instanceof PowerError)) throw new Error(`call ${i} threw ${err instanceof Error ? err.stack : String(err)}`);
        assert.ok(err.message.length > 10, err.message);
        failed++;
      }
      // No hang: the deadline bounds every call (a generous margin: the machine is shared and loaded).
      assert.ok(Date.now() - started < 1500 + 10_000, `call ${i} took ${Date.now() - started} ms`);
    }
  } finally {
    await driver.close();
    server.closeAllConnections();
    server.close();
  }
  assert.ok(failed > 0);
  assert.equal(gate.stats(), { running: 0, queued: 0, limit: 2 });
  void ok;
});

test.run();
