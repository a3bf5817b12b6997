import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { macReported } from '../server/inventory/bmc-facts.js';
import type { BmcConfig, Machine } from '../server/inventory/model.js';
import { ConsoleLines } from '../server/power/sol/lines.js';
import { captureStep, captureWanted, eventMayMoveCapture, parseRackList, sessionEnd, type CaptureFacts } from '../server/power/sol/policy.js';
import { createSolService } from '../server/power/sol/service.js';
import type { InventoryEvent } from '../server/inventory/model.js';
import { silentLogger } from '../server/lib/log.js';
import { mutateBytes, Rng, seedFromEnv } from './lib/fuzz.js';

/** The console capture's pure parts by table: lines kept, when to attach, what an ended session means; the MAC check. */
const test = suite('power: console capture decisions and the MAC check');

const bmc = (over: Partial<BmcConfig> = {}): BmcConfig => ({ driver: 'ipmi', address: '10.0.0.5', port: null, username: 'admin', cipherSuite: null, hasPassword: true, systemId: null, verifyTls: true, tlsFingerprint: null, solCapture: null, ...over });
type M = Pick<Machine, 'bmc' | 'rack' | 'state'>;
const m = (state: Machine['state'], over: Partial<M> = {}): M => ({ bmc: bmc(), rack: 'r1', state, ...over });
const facts = (state: CaptureFacts['state'], heldBack = false): CaptureFacts => ({ state, heldBack });

test('lines: control sequences dropped, CR/LF and bare CR split, partial lines kept, the last 200 only', () => {
  const c = new ConsoleLines();
  assert.equal(c.feed('\x1b[2J\x1b[1;1HBIOS \x1b[33mv1.2\x1b[0m\r\nBoot'), [{ seq: 1, text: 'BIOS v1.2' }]);
  assert.equal(c.feed('ing…\n\n\x07Linux\rversion 6.1\n'), [
    { seq: 2, text: 'Booting…' },
    { seq: 3, text: 'Linux' },
    { seq: 4, text: 'version 6.1' },
  ]);
  assert.equal(c.after(3).map((l) => l.text), ['version 6.1']);
  c.feed('half a line');
  assert.equal(c.tail().slice(-2), ['version 6.1', 'half a line']);
  for (let i = 0; i < 300; i++) c.feed(`line ${i}\n`);
  assert.is(c.after(0).length, 200);
  assert.is(c.after(0)[199]?.text, 'line 299');
  c.feed('x'.repeat(2000));
  assert.ok(c.after(0).every((l) => l.text.length <= 512));
});

test('lines: any bytes in, lines without control characters out', () => {
  const rng = new Rng(seedFromEnv(0x501));
  const c = new ConsoleLines();
  let b: Buffer = Buffer.from('\x1b[1mGRUB\x1b[0m loading\r\n\x1b]0;title\x07Linux version 6.1\n');
  for (let i = 0; i < 5000; i++) {
    b = mutateBytes(rng, b.length > 4000 ? b.subarray(0, 100) : b);
    for (const l of c.feed(b.toString('latin1'))) assert.ok([...l.text].every((ch) => ch === '\t' || (ch >= ' ' && ch !== '\u007f')), `case ${i}: ${JSON.stringify(l.text)}`);
  }
  assert.ok(c.after(0).length <= 200);
});

test('capture is explicit: the machine wins over its rack; IPMI only; a password needed', () => {
  assert.is(captureWanted(m('provisioning'), []), false);
  assert.is(captureWanted(m('provisioning'), ['r1']), true);
  assert.is(captureWanted(m('provisioning'), ['*']), true);
  assert.is(captureWanted(m('provisioning', { bmc: bmc({ solCapture: false }) }), ['*']), false);
  assert.is(captureWanted(m('provisioning', { bmc: bmc({ solCapture: true }), rack: null }), []), true);
  assert.is(captureWanted(m('provisioning', { bmc: bmc({ driver: 'redfish', solCapture: true }) }), ['*']), false);
  assert.is(captureWanted(m('provisioning', { bmc: bmc({ hasPassword: false }) }), ['*']), false);
  assert.equal(parseRackList(' r1, r2 ,,*'), ['r1', 'r2', '*']);
});

test('captureStep by state and what a person did', () => {
  const racks = ['r1'];
  const cases: [string, M | null, CaptureFacts | null, string][] = [
    ['assigned: nothing', m('assigned'), null, 'none'],
    ['provisioning: attach', m('provisioning'), null, 'attach'],
    ['reimaging: attach', m('reimaging'), facts('off'), 'attach'],
    ['installed: keeps it', m('installed'), facts('attached'), 'none'],
    ['ready: detach', m('ready'), facts('attached'), 'detach'],
    ['failed: detach', m('failed'), facts('attached'), 'detach'],
    ['deleted: detach', null, facts('attaching'), 'detach'],
    ['a person detached it: stays off', m('provisioning'), facts('detached', true), 'none'],
    ['yielded to a person: stays off', m('provisioning'), facts('yielded', true), 'none'],
    ['someone else holds the slot: keeps asking', m('provisioning'), facts('busy'), 'none'],
    ['ended, retry due: attach', m('provisioning'), facts('failed'), 'attach'],
    ['capture turned off mid-install: detach', m('provisioning', { bmc: bmc({ solCapture: false }) }), facts('attached'), 'detach'],
  ];
  for (const [name, machine, f, want] of cases) assert.is(captureStep(machine, f, racks), want, name);
});

test('which events are worth reading the machine for', () => {
  const state = (from: string, to: string) => ({ type: 'state', data: { from, to } });
  const cases: [string, { type: string; data: Record<string, unknown> | null }, boolean, boolean][] = [
    ['starts installing', state('assigned', 'provisioning'), false, true],
    ['reimaged', state('ready', 'reimaging'), false, true],
    ['the installer served again', state('provisioning', 'provisioning'), true, false],
    ['assigned by an import, nothing open', state('discovered', 'assigned'), false, false],
    ['ready, nothing open', state('installed', 'ready'), false, false],
    ['ready, a capture open: close it', state('installed', 'ready'), true, true],
    ['failed, a capture open: its tail', state('provisioning', 'failed'), true, true],
    ['BMC settings changed', { type: 'machine.updated', data: null }, false, true],
    ['deleted', { type: 'machine.deleted', data: null }, false, true],
    ['a boot observation', { type: 'http.ipxe', data: null }, true, false],
  ];
  for (const [name, e, open, want] of cases) assert.is(eventMayMoveCapture(e, open), want, name);
});

test('sessionEnd: what ipmitool said, and whether to ask again', () => {
  assert.equal(sessionEnd('Info: SOL payload already active on another session\n', false, false).state, 'busy');
  assert.is(sessionEnd('Info: SOL payload already active on another session\n', false, false).retryable, true);
  assert.equal(sessionEnd('[SOL Session operational.  Use ~? for help]\nLinux\n', true, false).state, 'yielded');
  assert.is(sessionEnd('[SOL Session operational.  Use ~? for help]\n', true, false).retryable, false);
  assert.equal(sessionEnd('anything', true, true).state, 'detached');
  assert.equal(sessionEnd('Error in open session response message : invalid authentication algorithm\n', false, false).state, 'failed');
  assert.is(sessionEnd('RAKP 2 HMAC is invalid\n', false, false).retryable, false);
});

test('the MAC check: reported, not reported, or nothing to say', () => {
  const f = (nics: string[] | null) => ({ source: 'redfish' as const, manufacturer: null, model: null, serial: null, biosVersion: null, firmwareVersion: null, nics, collectedAt: '2026-01-01T00:00:00Z' });
  const mac = { mac: '52:54:00:00:00:01' as Machine['mac'] };
  assert.is(macReported(mac, f(['52:54:00:00:00:01', '52:54:00:00:00:02'])), true);
  assert.is(macReported(mac, f(['52:54:00:00:00:09'])), false);
  assert.is(macReported(mac, f(null)), null);
  assert.is(macReported(mac, f([])), null);
  assert.is(macReported(mac, null), null);
});

test('the capture service reads a machine once per burst of its events, never for an installer served again nor for a move outside the install states', async () => {
  const reads: string[] = [];
  const bus: { listener: ((e: InventoryEvent) => void) | null } = { listener: null };
  const sol = createSolService({
    inventory: {
      machines: { get: async (mac) => (reads.push(mac), null), list: async () => [], bmcPassword: async () => null },
      events: { append: async () => ({}) as InventoryEvent, subscribe: (fn) => ((bus.listener = fn), () => (bus.listener = null)) },
    },
    settings: { ipmitool: 'ipmitool', racks: [], retryMs: 1000, pollMs: 3_600_000 },
  });
  await sol.start({ log: silentLogger() } as never);
  const event = (mac: string, from: string, to: string, id: number): InventoryEvent => ({ id, at: '', mac: mac as InventoryEvent['mac'], cluster: 'c', type: 'state', source: 'http', message: '', data: { from, to } });
  // A rack in its install loop: the installer served again and again.
  for (let i = 0; i < 1000; i++) bus.listener?.(event(`52:54:00:00:01:${String(i % 50).padStart(2, '0')}`, 'provisioning', 'provisioning', i));
  // One machine that moves three times at once: one read, after the last move.
  for (const [from, to] of [['ready', 'reimaging'], ['reimaging', 'provisioning'], ['provisioning', 'failed']] as const) bus.listener?.(event('52:54:00:00:02:01', from, to, 2000));
  // An import: a thousand machines assigned, none installing, none captured: nothing to read.
  for (let i = 0; i < 1000; i++) bus.listener?.(event(`52:54:00:00:${(3 + (i >> 8)).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, 'discovered', 'assigned', 3000 + i));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(reads, ['52:54:00:00:02:01']);
  await sol.stop();
});

test.run();
