import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../server/lib/log.js';
import { PowerError, type BmcTarget } from '../server/power/driver.js';
import { createIpmiDriver, type IpmiDriver } from '../server/power/ipmi.js';
import { createBmcGate } from '../server/power/scheduler.js';
import { foldRetransmissions, maxOverlap, startBmcSim, startDeadBmc, watchPs, type BmcSim } from './lib/bmc-sim.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The IPMI driver against real peers: Debian's ipmitool talking lanplus to OpenIPMI's ipmi_sim on
 * loopback. What the simulators' chassis programs logged is the evidence, not the driver's word.
 */
const test = suite('ipmi driver: ipmitool against ipmi_sim');
const PASSWORD = 'Pw-7fq2-ipmi-sim';
const missing = requirements(['ipmi_sim', 'ipmitool', 'mkfifo']);

let logText = '';
const logSink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    logText += chunk.toString();
    cb();
  },
});
const log = createLogger('debug', logSink);
let sims: BmcSim[] = [];
let driver: IpmiDriver;

const targetOf = (s: { address?: string; port: number }, over: Partial<BmcTarget> = {}): BmcTarget => ({ address: '127.0.0.1', port: s.port, username: 'admin', password: PASSWORD, cipherSuite: 3, ...over });

test.before(async () => {
  if (missing) return;
  sims = await Promise.all(Array.from({ length: 10 }, (_, i) => startBmcSim({ name: `pi${i}`, password: PASSWORD, setDelayMs: 200, rejectBoot: i === 9 })));
  driver = createIpmiDriver({ ipmitool: 'ipmitool', deadlineMs: 8000, retry: { maxAttempts: 3, baseDelayMs: 200, maxDelayMs: 1000 }, gate: createBmcGate(3), log });
});

test.after(async () => {
  driver?.close();
  await Promise.all(sims.map((s) => s.stop()));
});

const sim = (i: number): BmcSim => sims[i] as BmcSim;

test('status, on, status, off, cycle, reset: each reaches the simulated chassis', async () => {
  if (missing) return skipNote('ipmi driver', missing);
  const t = targetOf(sim(0));
  assert.is((await driver.status(t)).state, 'off');
  const on = await driver.on(t);
  assert.is(on.cipherSuite, 3);
  assert.is(sim(0).power(), '1');
  assert.is((await driver.status(t)).state, 'on');
  await driver.off(t);
  assert.is(sim(0).power(), '0');
  await driver.reset(t);
  await driver.cycle(t);
  const sets = sim(0).sets().map((c) => c.args);
  assert.equal(sets.slice(0, 4), ['set power 1', 'set power 0', 'set reset 1', 'set power 0']);
});

test('setNextBoot(pxe): set, then read back from the BMC', async () => {
  if (missing) return;
  const info = await driver.setNextBoot(targetOf(sim(1)), 'pxe', { efi: true, persistent: false });
  assert.is(sim(1).boot(), 'pxe');
  // ipmi_sim keeps no EFI flag: the driver says so instead of trusting the acknowledgement.
  assert.match(info.warning ?? '', /legacy/);
  await driver.setNextBoot(targetOf(sim(1)), 'disk', { efi: false, persistent: true });
  assert.is(sim(1).boot(), 'default');
});

test('a rejected boot device fails although ipmitool exits 0', async () => {
  if (missing) return;
  try {
    await driver.setNextBoot(targetOf(sim(9)), 'pxe', { efi: false, persistent: false });
    assert.unreachable('should fail');
  } catch (err) {
    assert.instance(err, PowerError);
    assert.is((err as PowerError).code, 'ERR_BMC_REJECTED');
    assert.match((err as PowerError).message, /Set Chassis Boot Parameter 5 failed/);
    assert.is((err as PowerError).attempts, 1, 'a rejection is not retried');
  }
  assert.is(sim(9).boot(), 'default');
});

test('cipher suite 17 is refused by ipmi_sim 2.0.33: falls back to 3, then remembers it', async () => {
  if (missing) return;
  const t = targetOf(sim(2), { cipherSuite: null });
  const first = await driver.status(t);
  assert.is(first.cipherSuite, 3);
  assert.is(first.attempts, 2);
  const second = await driver.status(t);
  assert.is(second.attempts, 1, 'the learned suite goes first');
});

test('a wrong password fails at once, as an authentication error', async () => {
  if (missing) return;
  try {
    await driver.status(targetOf(sim(3), { password: 'not-the-password' }));
    assert.unreachable('should fail');
  } catch (err) {
    assert.is((err as PowerError).code, 'ERR_BMC_AUTH');
    assert.is((err as PowerError).attempts, 1);
    assert.match((err as PowerError).message, /wrong user name or password/);
  }
});

test('a BMC that never answers fails within the deadline, after bounded retries', async () => {
  if (missing) return;
  const dead = await startDeadBmc();
  const quick = createIpmiDriver({ ipmitool: 'ipmitool', deadlineMs: 4000, retry: { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 1000 }, gate: createBmcGate(3), log });
  const started = Date.now();
  try {
    await quick.on(targetOf(dead));
    assert.unreachable('should fail');
  } catch (err) {
    const ms = Date.now() - started;
    assert.instance(err, PowerError);
    assert.ok(['ERR_BMC_TIMEOUT', 'ERR_BMC_UNREACHABLE'].includes((err as PowerError).code), (err as Error).message);
    assert.ok(ms < 4000 + 1500, `took ${ms} ms for a 4 s deadline`);
    assert.ok((err as PowerError).attempts >= 2, 'retried');
    assert.match((err as Error).message, /did not answer/);
    assert.ok(dead.packets() > 0, 'ipmitool did send');
  } finally {
    quick.close();
    await dead.stop();
  }
});

test('ten BMCs at once: never more than 3 commands in flight, never two on one BMC', async () => {
  if (missing) return;
  const before = sims.map((s) => s.calls().length);
  const ps = watchPs(PASSWORD);
  // Two rounds on every BMC, all queued at once.
  await Promise.all(sims.slice(0, 9).flatMap((s) => [driver.on(targetOf(s)), driver.off(targetOf(s))]));
  const seen = await ps.stop();
  const calls = sims.slice(0, 9).flatMap((s, i) => foldRetransmissions(s.calls().slice(before[i])));
  const sets = calls.filter((c) => c.args.startsWith('set power'));
  assert.is(sets.length, 18);
  const overlap = maxOverlap(calls);
  assert.ok(overlap <= 3, `${overlap} chassis commands overlapped`);
  assert.ok(overlap >= 2, 'the BMCs were driven in parallel');
  for (const s of sims.slice(0, 9)) assert.is(maxOverlap(foldRetransmissions(s.calls())), 1, `two commands at once on ${s.name}`);
  // The password is never on a command line, while ipmitool runs.
  assert.ok(seen.ipmitoolLines.length > 0, `ps never caught an ipmitool (${seen.samples} samples)`);
  assert.equal(seen.leaks, []);
  assert.ok(seen.ipmitoolLines.every((l) => / -f \S+ /.test(l) && !/ -P /.test(l)));
});

test('a forking ipmitool wrapper that hangs: the deadline holds, its children are ended, the next call to that BMC proceeds', async () => {
  if (missing) return;
  // A site's wrapper (logging, a vendor shim) whose first call forks a child that keeps the
  // output pipe open and never ends; later calls run the real ipmitool.
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-ipmi-wrapper-'));
  const wrapper = join(dir, 'ipmitool-wrapper');
  writeFileSync(
    wrapper,
    ['#!/bin/sh', `if [ ! -e ${dir}/held ]; then`, `  : > ${dir}/held`, '  sleep 180 &', `  echo $! > ${dir}/sleep.pid`, '  wait', 'fi', 'exec ipmitool "$@"', ''].join('\n'),
    { mode: 0o755 },
  );
  const wrapped = createIpmiDriver({ ipmitool: wrapper, deadlineMs: 3000, retry: { maxAttempts: 3, baseDelayMs: 200, maxDelayMs: 1000 }, gate: createBmcGate(3), log });
  const t = targetOf(sim(4));
  const guards: NodeJS.Timeout[] = [];
  // A bound for the test itself, far above the 3 s deadline: without the fix the held call waits for the child's 180 s.
  const bounded = <T>(p: Promise<T>): Promise<T> =>
    Promise.race([p, new Promise<T>((_, reject) => guards.push(setTimeout(() => reject(new Error('the deadline did not hold: the call still waits')), 60_000)))]);
  try {
    const settle = <T>(p: Promise<T>): Promise<T | Error> => p.catch((e: unknown) => e as Error);
    const held = settle(wrapped.status(t));
    const next = settle(wrapped.status(t));
    try {
      const err = await bounded(held);
      assert.instance(err, PowerError);
      assert.is((err as PowerError).code, 'ERR_BMC_TIMEOUT', (err as Error).message);
      const sleeper = Number(readFileSync(join(dir, 'sleep.pid'), 'utf8'));
      assert.ok(sleeper > 1);
      // Gone, or dead and waiting to be reaped (a container's init may reap late).
      let state = 'gone';
      try {
        state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${sleeper}/status`, 'utf8'))?.[1] ?? '?';
      } catch {
        /* no such process */
      }
      assert.ok(state === 'gone' || state === 'Z', `the wrapper's child still runs (state ${state})`);
      const after = await bounded(next);
      assert.not.instance(after, Error, String(after));
      assert.is((after as { state: string }).state, 'off', 'the call queued behind it on the same BMC went through');
    } finally {
      await bounded(Promise.all([held, next])).catch(() => undefined);
    }
  } finally {
    for (const g of guards) clearTimeout(g);
    wrapped.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the password is in no log line', () => {
  if (missing) return;
  assert.ok(logText.length > 100);
  assert.not.ok(logText.includes(PASSWORD));
});

test.run();
