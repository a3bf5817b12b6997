import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import type { PowerFailureKind } from '../server/power/driver.js';
import { cipherOrder, commandArgs, ipmitoolArgs, nextStep, parseIpmitool, requestTiming, type IpmiCommand, type RunResult } from '../server/power/ipmitool.js';

/**
 * The IPMI driver's decisions, by table. The outputs are what Debian's ipmitool 1.8.19 printed
 * against OpenIPMI's ipmi_sim 2.0.33 (and, for the error texts, ipmitool's own strings).
 */
const VSO = 'Loading IANA PEN Registry...\nRunning Get VSO Capabilities my_addr 0x20, transit 0, target 0x20\nInvalid completion code received: Invalid command\nDiscovered IPMB address 0x0\n';
const res = (stdout: string, stderr = '', exitCode: number | null = 0): RunResult => ({ exitCode, stdout, stderr, timedOut: false });

type Expect = { ok: true; state?: string; device?: string } | { kind: PowerFailureKind };
const CASES: [string, IpmiCommand, RunResult, Expect][] = [
  ['status on', { op: 'status' }, res('Chassis Power is on\n', VSO), { ok: true, state: 'on' }],
  ['status off', { op: 'status' }, res('Chassis Power is off\n', VSO), { ok: true, state: 'off' }],
  ['power on acked', { op: 'on' }, res('Chassis Power Control: Up/On\n', VSO), { ok: true }],
  ['power off acked', { op: 'off' }, res('Chassis Power Control: Down/Off\n', VSO), { ok: true }],
  ['cycle acked', { op: 'cycle' }, res('Chassis Power Control: Cycle\n', VSO), { ok: true }],
  ['reset acked', { op: 'reset' }, res('Chassis Power Control: Reset\n', VSO), { ok: true }],
  ['on answered with the wrong ack', { op: 'on' }, res('Chassis Power Control: Down/Off\n', VSO), { kind: 'output' }],
  ['bootdev pxe acked', { op: 'bootdev', device: 'pxe' }, res('Set Boot Device to pxe\n', VSO), { ok: true }],
  ['bootdev acked for another device', { op: 'bootdev', device: 'pxe' }, res('Set Boot Device to disk\n', VSO), { kind: 'output' }],
  // The case the exit code hides: exit 0, the BMC said no.
  ['bootdev rejected, exit 0', { op: 'bootdev', device: 'pxe' }, res('', VSO + 'Set Chassis Boot Parameter 5 failed: Unspecified error\n', 0), { kind: 'rejected' }],
  ['bootdev: no answer inside the session', { op: 'bootdev', device: 'pxe' }, res('', 'Error setting Chassis Boot Parameter 5\n', 0), { kind: 'unreachable' }],
  ['power on: node busy', { op: 'on' }, res('', VSO + 'Set Chassis Power Control to Up/On failed: Node busy\n', 1), { kind: 'busy' }],
  ['status: completion code timeout', { op: 'status' }, res('', 'Get Chassis Power Status failed: Timeout\n', 1), { kind: 'busy' }],
  ['status: no answer inside the session', { op: 'status' }, res('', 'Unable to get Chassis Power Status\n', 1), { kind: 'unreachable' }],
  ['cipher suite 17 unsupported', { op: 'status' }, res('', 'Loading IANA PEN Registry...\nError in open session response message : invalid authentication algorithm\n\nError: Unable to establish IPMI v2 / RMCP+ session\n', 1), { kind: 'cipher' }],
  ['wrong password', { op: 'status' }, res('', 'Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n', 1), { kind: 'auth' }],
  ['unknown user', { op: 'status' }, res('', 'Loading IANA PEN Registry...\nRAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2 / RMCP+ session\n', 1), { kind: 'auth' }],
  ['no answer at all', { op: 'status' }, res('', 'Loading IANA PEN Registry...\nGet Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session\n', 1), { kind: 'unreachable' }],
  ['killed at the deadline', { op: 'status' }, { exitCode: null, stdout: '', stderr: '', timedOut: true }, { kind: 'timeout' }],
  ['ipmitool missing', { op: 'status' }, { exitCode: null, stdout: '', stderr: '', timedOut: false, spawnError: 'spawn ipmitool ENOENT' }, { kind: 'tool' }],
  ['garbage', { op: 'status' }, res('Hello\n', '', 0), { kind: 'output' }],
  ['usage error', { op: 'status' }, res('', 'Invalid argument: bogus\n', 1), { kind: 'output' }],
  [
    'boot flags read back: PXE, legacy',
    { op: 'bootread' },
    res('Boot parameter version: 1\nBoot parameter 5 is valid/unlocked\nBoot parameter data: 0004000000\n Boot Flags :\n   - Boot Flag Invalid\n   - Options apply to only next boot\n   - BIOS PC Compatible (legacy) boot \n   - Boot Device Selector : Force PXE\n   - BIOS verbosity : System Default\n', VSO),
    { ok: true, device: 'pxe' },
  ],
  ['boot flags read back: disk', { op: 'bootread' }, res('   - Boot Device Selector : Force Boot from default Hard-Drive\n', VSO), { ok: true, device: 'disk' }],
];

const parse = suite('ipmitool output → outcome');
for (const [name, cmd, r, want] of CASES) {
  parse(name, () => {
    const got = parseIpmitool(cmd, r);
    if ('ok' in want) {
      assert.ok(got.ok, JSON.stringify(got));
      if (got.ok && want.state) assert.is(got.state, want.state);
      if (got.ok && want.device) assert.is(got.boot?.device, want.device);
    } else {
      assert.not.ok(got.ok, JSON.stringify(got));
      if (!got.ok) {
        assert.is(got.kind, want.kind);
        assert.not.match(got.detail, /Loading IANA|Running Get VSO/);
      }
    }
  });
}
parse('EFI read back from the boot flags', () => {
  const got = parseIpmitool({ op: 'bootread' }, res('   - BIOS EFI boot \n   - Boot Device Selector : Force PXE\n'));
  assert.ok(got.ok && got.boot?.efi === true);
});
parse.run();

const args = suite('ipmitool arguments');
args('commands', () => {
  assert.equal(commandArgs({ op: 'status' }), ['chassis', 'power', 'status']);
  assert.equal(commandArgs({ op: 'bootdev', device: 'pxe', boot: { efi: true, persistent: false } }), ['chassis', 'bootdev', 'pxe', 'options=efiboot']);
  assert.equal(commandArgs({ op: 'bootdev', device: 'pxe', boot: { efi: true, persistent: true } }), ['chassis', 'bootdev', 'pxe', 'options=efiboot,persistent']);
  assert.equal(commandArgs({ op: 'bootdev', device: 'disk', boot: { efi: false, persistent: false } }), ['chassis', 'bootdev', 'disk']);
  assert.equal(commandArgs({ op: 'bootread' }), ['chassis', 'bootparam', 'get', '5']);
});
args('the password is never an argument: only the file it is read from', () => {
  const a = ipmitoolArgs({ address: '10.0.0.5', port: 623, username: 'admin' }, 17, { timeoutSec: 2, retries: 1 }, { op: 'on' }, '/run/x/pw-1');
  assert.equal(a.slice(0, 10), ['-I', 'lanplus', '-H', '10.0.0.5', '-p', '623', '-U', 'admin', '-f', '/run/x/pw-1']);
  assert.ok(a.includes('-C') && a[a.indexOf('-C') + 1] === '17');
  assert.not.ok(a.includes('-P') || a.includes('-E'));
});
args('ipmitool request timing fits the deadline', () => {
  assert.equal(requestTiming(4000), { timeoutSec: 1, retries: 1 });
  assert.equal(requestTiming(30_000), { timeoutSec: 3, retries: 1 });
  assert.equal(requestTiming(600_000), { timeoutSec: 5, retries: 1 });
});
args.run();

const ciphers = suite('cipher suite order');
const ORDER: [string, number | null, number | null, number[]][] = [
  ['default: 17 then 3', null, null, [17, 3]],
  ['configured 17 still falls back to 3', 17, null, [17, 3]],
  ['configured 3 only', 3, null, [3]],
  ['learned 3 goes first', null, 3, [3, 17]],
  ['learned suite outside the configured one is ignored', 3, 17, [3]],
];
for (const [name, configured, learned, want] of ORDER) ciphers(name, () => assert.equal(cipherOrder(configured, learned), want));
ciphers.run();

const retry = suite('retry policy');
const policy = { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 4000 };
const RETRY: [string, { suite: number; kind: PowerFailureKind }[], number[], number, string][] = [
  ['first attempt', [], [17, 3], 10_000, 'retry 17 0'],
  ['cipher refused: next suite at once', [{ suite: 17, kind: 'cipher' }], [17, 3], 10_000, 'retry 3 0'],
  ['every suite refused', [{ suite: 17, kind: 'cipher' }, { suite: 3, kind: 'cipher' }], [17, 3], 10_000, 'give-up cipher'],
  ['no answer: same suite after 0.5 s', [{ suite: 3, kind: 'unreachable' }], [3], 10_000, 'retry 3 500'],
  ['no answer twice: 1 s', [{ suite: 3, kind: 'unreachable' }, { suite: 3, kind: 'unreachable' }], [3], 10_000, 'retry 3 1000'],
  ['no answer three times: give up', [{ suite: 3, kind: 'unreachable' }, { suite: 3, kind: 'timeout' }, { suite: 3, kind: 'busy' }], [3], 10_000, 'give-up busy'],
  ['cipher fallbacks do not use up retries', [{ suite: 17, kind: 'cipher' }, { suite: 3, kind: 'unreachable' }], [17, 3], 10_000, 'retry 3 500'],
  ['busy: retried', [{ suite: 3, kind: 'busy' }], [3], 10_000, 'retry 3 500'],
  ['wrong password: never retried', [{ suite: 3, kind: 'auth' }], [3], 10_000, 'give-up auth'],
  ['rejected: never retried', [{ suite: 3, kind: 'rejected' }], [3], 10_000, 'give-up rejected'],
  ['garbage: never retried', [{ suite: 3, kind: 'output' }], [3], 10_000, 'give-up output'],
  ['no time left for the backoff', [{ suite: 3, kind: 'unreachable' }], [3], 300, 'give-up timeout'],
];
for (const [name, history, suites, remaining, want] of RETRY) {
  retry(name, () => {
    const s = nextStep(history, suites, policy, remaining);
    assert.is(s.action === 'retry' ? `retry ${s.suite} ${s.delayMs}` : `give-up ${s.kind}`, want);
  });
}
retry.run();

const fuzz = suite('ipmitool output parser: seeded fuzz');
fuzz('any output gives an outcome of a known kind, never a throw', () => {
  let seed = 0x5eed1234;
  const rand = (): number => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pieces = CASES.flatMap(([, , r]) => `${r.stdout}\n${r.stderr}`.split('\n')).filter(Boolean);
  const ops: IpmiCommand[] = [{ op: 'status' }, { op: 'on' }, { op: 'off' }, { op: 'cycle' }, { op: 'reset' }, { op: 'bootdev', device: 'pxe' }, { op: 'bootread' }];
  const kinds = new Set(['timeout', 'unreachable', 'auth', 'cipher', 'rejected', 'busy', 'output', 'tool', 'aborted']);
  for (let i = 0; i < 20_000; i++) {
    const lines: string[] = [];
    const n = Math.floor(rand() * 6);
    for (let j = 0; j < n; j++) {
      const p = pieces[Math.floor(rand() * pieces.length)] ?? '';
      const r = rand();
      if (r < 0.5) lines.push(p);
      else if (r < 0.7) lines.push(p.slice(0, Math.floor(rand() * p.length)));
      else if (r < 0.85) lines.push(Array.from({ length: Math.floor(rand() * 80) }, () => String.fromCharCode(Math.floor(rand() * 0x3000))).join(''));
      else lines.push(p.replace(/[a-z]/g, (c) => (rand() < 0.1 ? String.fromCharCode(c.charCodeAt(0) ^ 0x20) : c)));
    }
    const text = lines.join(rand() < 0.5 ? '\n' : '\r\n');
    const split = Math.floor(rand() * text.length);
    const op = ops[Math.floor(rand() * ops.length)] as IpmiCommand;
    const out = parseIpmitool(op, { exitCode: rand() < 0.5 ? 0 : 1, stdout: text.slice(0, split), stderr: text.slice(split), timedOut: false });
    if (!out.ok) {
      assert.ok(kinds.has(out.kind), out.kind);
      assert.ok(out.detail.length <= 300, 'detail stays one short line');
    } else if (op.op === 'status') {
      assert.ok(out.state === 'on' || out.state === 'off');
    }
  }
});
fuzz.run();
