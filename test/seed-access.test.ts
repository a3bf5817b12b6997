import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createDiscoveryGate } from '../server/inventory/discovery.js';
import type { MachineState } from '../server/inventory/lifecycle.js';
import { loggedPath } from '../server/http/context.js';
import { checkBootAddress, checkSeedAccess, type SeedUse } from '../server/seeds/access.js';
import { macRefusal, parseMac, type Mac } from '../server/lib/mac.js';
import { fixtureMachine } from './lib/seed-fixtures.js';

/**
 * Who may use a seed token and who may be handed one, as tables of named cases; how many unknown
 * MACs a source may add; what the access log keeps of a seed path; which MACs name no card.
 */
const test = suite('seed tokens: bound to the machine; discovery allowances; access-log paths; group MACs');

const MAC = '52:54:00:77:00:11';
const machine = (ip: string | null, state: MachineState = 'provisioning', failedFrom: MachineState | null = null) => ({ ...fixtureMachine('lab', MAC, 'w1', 'worker', ip, state), failedFrom });

type Want = 'ok' | 403 | 404;
const SEED_CASES: [string, ReturnType<typeof machine> | null, string | null, SeedUse, string | null, Want][] = [
  ['unknown token', null, '10.0.0.5', 'read', '10.0.0.5', 404],
  ['from the address its boot script went to', machine(null), '10.0.0.5', 'read', '10.0.0.5', 'ok'],
  ['from another address', machine(null), '10.0.0.6', 'read', '10.0.0.5', 403],
  ['report from another address', machine(null), '10.0.0.6', 'report', '10.0.0.5', 403],
  ['from the machine ip (static address after install)', machine('10.0.1.5'), '10.0.1.5', 'report', '10.0.0.5', 'ok'],
  ['from the boot address although an ip is set (PXE on the site DHCP)', machine('10.0.1.5'), '10.0.0.5', 'read', '10.0.0.5', 'ok'],
  ['neither the boot address nor the ip', machine('10.0.1.5'), '10.0.0.9', 'read', '10.0.0.5', 403],
  ['never handed out by a boot script, no ip', machine(null), '10.0.0.5', 'read', null, 403],
  ['never handed out, from the ip', machine('10.0.1.5'), '10.0.1.5', 'read', null, 'ok'],
  ['no remote address', machine('10.0.1.5'), null, 'read', null, 403],
  ['expired: the machine is ready', machine(null, 'ready'), '10.0.0.5', 'report', '10.0.0.5', 404],
  ['expired, even from its own address with a wrong one', machine(null, 'ready'), '10.0.0.6', 'read', '10.0.0.5', 404],
  ['a failed install may still report', machine(null, 'failed', 'provisioning'), '10.0.0.5', 'report', '10.0.0.5', 'ok'],
  ['a failed install may not read seeds', machine(null, 'failed', 'provisioning'), '10.0.0.5', 'read', '10.0.0.5', 404],
  ['a failed install reports only from its own address', machine(null, 'failed', 'provisioning'), '10.0.0.6', 'report', '10.0.0.5', 403],
];
for (const [name, m, remote, use, boundTo, want] of SEED_CASES) {
  test(`seed access: ${name}`, () => {
    const got = checkSeedAccess(m, remote, use, boundTo);
    if (want === 'ok') assert.ok(got.ok, JSON.stringify(got));
    else {
      assert.not.ok(got.ok);
      if (!got.ok) {
        assert.is(got.status, want);
        assert.is(got.code, want === 403 ? 'ERR_WRONG_ADDRESS' : 'ERR_UNKNOWN_TOKEN');
      }
    }
  });
}

const BOOT_CASES: [string, string | null, string | null, string | null, boolean][] = [
  ['proxy mode: no lease of ours, anyone asking gets a token bound to itself', null, '10.0.0.5', null, true],
  ['authoritative: from the leased address', null, '10.0.0.5', '10.0.0.5', true],
  ['authoritative: someone else asks with the MAC', null, '10.0.0.66', '10.0.0.5', false],
  ['the machine ip always may', '10.0.1.5', '10.0.1.5', '10.0.0.5', true],
  ['an ip set, asked from elsewhere, no lease', '10.0.1.5', '10.0.0.5', null, true],
  ['no remote address', null, null, null, false],
];
for (const [name, ip, remote, leased, ok] of BOOT_CASES) {
  test(`boot address: ${name}`, () => {
    assert.is(checkBootAddress({ ip }, remote, leased).ok, ok);
  });
}

test('discovery: a source spends its allowance, refusals are counted and flagged once, the allowance refills over the window', () => {
  let now = 0;
  const gate = createDiscoveryGate({ perWindow: 3, windowMs: 3_600_000 }, () => now);
  for (let i = 0; i < 3; i++) assert.ok(gate.admit('10.0.0.5').ok);
  assert.equal(gate.admit('10.0.0.5'), { ok: false, first: true });
  assert.equal(gate.admit('10.0.0.5'), { ok: false, first: false }, 'logged once per run of refusals');
  assert.ok(gate.admit('10.0.0.6').ok, 'another source has its own allowance');
  assert.is(gate.refused(), 2);
  now = 1_200_000; // a third of the window: one allowance back
  assert.ok(gate.admit('10.0.0.5').ok);
  assert.equal(gate.admit('10.0.0.5'), { ok: false, first: true }, 'a new run of refusals is flagged again');
  now = 100 * 3_600_000;
  for (let i = 0; i < 3; i++) assert.ok(gate.admit('10.0.0.5').ok, 'refilled to the allowance, not beyond');
  assert.not.ok(gate.admit('10.0.0.5').ok);
});

test('discovery: 300 made-up MACs from one address add at most the allowance; a rack of 200 on one segment all get in', () => {
  const perAddress = createDiscoveryGate({ perWindow: 8, windowMs: 3_600_000 }, () => 0);
  assert.is(Array.from({ length: 300 }, () => perAddress.admit('10.0.0.66')).filter((a) => a.ok).length, 8);
  const perSegment = createDiscoveryGate({ perWindow: 1000, windowMs: 3_600_000 }, () => 0);
  assert.is(Array.from({ length: 200 }, () => perSegment.admit('interface eth1')).filter((a) => a.ok).length, 200);
  const off = createDiscoveryGate({ perWindow: 0, windowMs: 3_600_000 }, () => 0);
  assert.not.ok(off.admit('x').ok, '0: nothing is recorded');
});

test('discovery: memory is bounded by the sources tracked', () => {
  let now = 0;
  const gate = createDiscoveryGate({ perWindow: 2, windowMs: 1000 }, () => now, 100);
  for (let i = 0; i < 1000; i++) {
    now += 1;
    gate.admit(`10.0.${i >> 8}.${i & 255}`);
  }
  // Bounded: the next source is still admitted (a fresh allowance), nothing throws.
  assert.ok(gate.admit('192.0.2.1').ok);
  assert.throws(() => createDiscoveryGate({ perWindow: -1, windowMs: 1 }), RangeError);
});

test('the access log keeps the place of a seed token, never the token', () => {
  const token = 'Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MDEy';
  for (const [path, want] of [
    [`/seed/${token}/user-data`, '/seed/[redacted]/user-data'],
    [`/seed/${token}/phone-home`, '/seed/[redacted]/phone-home'],
    [`/seed/${token}`, '/seed/[redacted]'],
    [`/SEED/${token}/meta-data`, '/seed/[redacted]/meta-data'],
    [`//seed/${token}/x`, '/seed/[redacted]/x'],
    ['/boot.ipxe', '/boot.ipxe'],
    ['/api/v1/machines', '/api/v1/machines'],
    [`/artifacts/22.04/seed/${token}`, `/artifacts/22.04/seed/${token}`],
  ] as const) {
    assert.is(loggedPath(path), want, path);
  }
});

test('MACs that name no network card: broadcast, multicast (group bit), all zero', () => {
  const refused = ['ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '33:33:00:00:00:01', '01:80:c2:00:00:00', '00:00:00:00:00:00', '03:00:00:00:00:00'];
  for (const text of refused) assert.ok(macRefusal(parseMac(text) as Mac), text);
  const fine = ['52:54:00:aa:bb:cc', '00:00:00:00:00:01', '02:00:00:00:00:00', 'fe:ff:ff:ff:ff:ff', 'a4:bf:01:23:45:67'];
  for (const text of fine) assert.is(macRefusal(parseMac(text) as Mac), null, text);
  assert.match(macRefusal('ff:ff:ff:ff:ff:ff' as Mac) ?? '', /broadcast/);
  assert.match(macRefusal('01:00:5e:00:00:01' as Mac) ?? '', /multicast/);
  assert.match(macRefusal('00:00:00:00:00:00' as Mac) ?? '', /all-zero/);
});

test.run();
