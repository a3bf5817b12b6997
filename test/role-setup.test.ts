import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { decideRoleSetupReport, failureLine, parseRoleSetupReport, RoleSetupReportError } from '../server/seeds/role-setup.js';
import { NASTY_STRINGS, Rng, seedFromEnv } from './lib/fuzz.js';
import { rawRequest } from './lib/http.js';
import { changeLine, rowOf } from '../server/cli/watch.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * Issue 17, item 1: a failed role setup is a failed machine. The report's parser and decision as
 * tables and a fuzz; then the real server, driven as a machine drives it: the role setup reports,
 * then cloud-init phones home. (The whole path with real cloud-init is in cloudinit.heavy.test.)
 */
const test = suite('role setup report: a failed setup fails the machine; its phone-home cannot make it ready');

const APT_LOG = ['+ swapoff -a', "+ apt-get install -y kubelet=1.30.7-* kubeadm=1.30.7-* kubectl=1.30.7-*", 'Reading package lists...', "E: Version '1.30.7-*' for 'kubelet' was not found", "E: Version '1.30.7-*' for 'kubeadm' was not found"].join('\n');

test('parse: status, command and log, normalised; bad input is the typed error naming the field', () => {
  const r = parseRoleSetupReport({ status: '100', command: 'apt-get install -y kubelet=1.30.7-*', log: APT_LOG + '\n' });
  assert.equal(r, { status: 100, command: 'apt-get install -y kubelet=1.30.7-*', log: APT_LOG.split('\n') });
  assert.equal(parseRoleSetupReport({ status: 0 }), { status: 0, command: null, log: [] });
  const long = parseRoleSetupReport({ status: '1', log: Array.from({ length: 100 }, (_, i) => `line ${i}\x1b[0m\t${'x'.repeat(600)}`).join('\n') });
  assert.is(long.log.length, 40);
  assert.ok(long.log[0]?.startsWith('line 60[0m '), long.log[0]);
  assert.ok(long.log.every((l) => l.length <= 500));
  for (const [body, field] of [
    [{ status: '256' }, 'status'],
    [{ status: '-1' }, 'status'],
    [{ status: 'x' }, 'status'],
    [{}, 'status'],
    [{ status: '1', command: ['a'] }, 'command'],
    [{ status: '1', log: 5 }, 'log'],
  ] as const) {
    assert.throws(() => parseRoleSetupReport(body), (e: unknown) => e instanceof RoleSetupReportError && e.field === field, JSON.stringify(body));
  }
  assert.throws(() => parseRoleSetupReport('status=1'), (e: unknown) => e instanceof RoleSetupReportError);
});

test('the reason: the failing command and the first apt error of its output', () => {
  for (const [name, log, want] of [
    ['apt: the first E: line of the failing command', APT_LOG, "E: Version '1.30.7-*' for 'kubelet' was not found"],
    ['an earlier E: line belongs to an earlier command', "+ apt-get update\nE: old\n+ haproxy -c -f /etc/haproxy/haproxy.cfg\n[ALERT] parsing: error detected\nFatal errors found", '[ALERT] parsing: error detected'],
    ['no marked line: the last one', '+ false\nsomething odd', 'something odd'],
    ['no output', '+ false', null],
  ] as const) {
    assert.is(failureLine(log.split('\n')), want, name);
  }
  const failed = decideRoleSetupReport({ state: 'installed' }, parseRoleSetupReport({ status: '100', command: 'apt-get install -y kubelet=1.30.7-*', log: APT_LOG }));
  assert.equal(failed.events, ['fail']);
  assert.equal(failed.failure, { step: 'role-setup', reason: "`apt-get install -y kubelet=1.30.7-*` exited 100: E: Version '1.30.7-*' for 'kubelet' was not found" });
  assert.equal(decideRoleSetupReport({ state: 'installed' }, { status: 0, command: null, log: [] }), { events: [], failure: null, message: 'role setup done' });
  // The installer never reported: the report is the first sign the OS is on disk.
  assert.equal(decideRoleSetupReport({ state: 'provisioning' }, { status: 0, command: null, log: [] }).events, ['installed']);
  assert.equal(decideRoleSetupReport({ state: 'assigned' }, { status: 2, command: 'x', log: [] }).events, ['installer-served', 'installed', 'fail']);
  // A machine that failed already keeps its first failure.
  const again = decideRoleSetupReport({ state: 'failed' }, { status: 2, command: 'x', log: [] });
  assert.equal(again.events, []);
  assert.match(again.message, /already failed/);
});

test('fuzz: any body parses or is refused with the typed error', () => {
  const rng = new Rng(seedFromEnv(0x17b));
  const values = (): unknown => rng.pick<unknown>([null, 0, 255, 256, -1, 1.5, '', '0', '100', '007', true, [], {}, ['1'], rng.pick(NASTY_STRINGS), rng.string(rng.range(0, 2000), 'ab\n\r\t\u0000\u001b€+ E:')]);
  for (let i = 0; i < 3000; i++) {
    const body = rng.chance(0.05) ? rng.pick<unknown>([null, [], 'x', 5]) : Object.fromEntries(['status', 'command', 'log', 'extra'].filter(() => rng.chance(0.7)).map((k) => [k, values()]));
    try {
      const r = parseRoleSetupReport(body);
      assert.ok(r.status >= 0 && r.status <= 255 && r.log.length <= 40 && (r.command === null || !/[\r\n]/.test(r.command)), `seed ${rng.seed} #${i}`);
      decideRoleSetupReport({ state: 'installed' }, r);
    } catch (err) {
      assert.ok(err instanceof RoleSetupReportError, `seed ${rng.seed} #${i}: ${String(err)}`);
    }
  }
});

let rs: RacksmithProcess;
let admin = '';
const missing = requirements(['ssh-keygen']);
const work = mkdtempSync(join(tmpdir(), 'racksmith-rolesetup-'));

test.before(async () => {
  rs = await startRacksmith();
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  const c = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.30.7', containerRuntime: 'containerd', cni: 'flannel' });
  assert.is(c.status, 201, c.text);
  for (const [mac, hostname, ip] of [['52:54:00:17:01:01', 'w1', '127.0.0.31'], ['52:54:00:17:01:02', 'w2', '127.0.0.32']] as const) {
    assert.is((await api(rs.url, admin, 'POST', '/api/v1/machines', { mac, hostname, role: 'worker', cluster: 'lab', ip })).status, 201);
  }
});

test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
  rmSync(work, { recursive: true, force: true });
});

const seedPaths = new Map<string, string>();
const postSeed = (mac: string, p: string, body: string, ip: string) =>
  rawRequest(`${rs.url}${seedPaths.get(mac) ?? ''}${p}`, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' }, localAddress: ip });

/** The installer's part, then the role setup's report and cloud-init's phone-home, from the machine's address. */
async function installAndReport(mac: string, ip: string, report: string): Promise<{ report: any; phoneHome: any }> {
  const script = await rawRequest(`${rs.url}/boot.ipxe?mac=${mac}&arch=x86_64&platform=efi`, { localAddress: ip });
  const seed = /s=(http:\/\/\S+?\/seed\/[A-Za-z0-9_-]+\/)/.exec(script.text())?.[1];
  assert.ok(seed, script.text());
  seedPaths.set(mac, new URL(seed).pathname);
  const post = (p: string, body: string) => postSeed(mac, p, body, ip);
  assert.is((await post('installed', 'source=late-commands')).status, 200);
  const r = await post('role-setup', report);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, mac.replace(/:/g, ''))]);
  const key = readFileSync(join(work, `${mac.replace(/:/g, '')}.pub`), 'utf8').trim();
  const ph = await post('phone-home', `pub_key_ed25519=${encodeURIComponent(key)}&instance_id=i-1&hostname=w`);
  return { report: { status: r.status, body: r.json() }, phoneHome: { status: ph.status, body: ph.json() } };
}

test('the real server: a failed report fails the machine (API, events, watch line); the phone-home then leaves it failed', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const mac = '52:54:00:17:01:01';
  const body = new URLSearchParams({ status: '100', command: 'apt-get install -y kubelet=1.30.7-* kubeadm=1.30.7-* kubectl=1.30.7-*', log: APT_LOG }).toString();
  const { report, phoneHome } = await installAndReport(mac, '127.0.0.31', body);
  assert.equal(report, { status: 200, body: { mac, state: 'failed' } });
  // cloud-init's phone-home is answered (no retries), and does not make the machine ready.
  assert.equal(phoneHome, { status: 200, body: { mac, state: 'failed' } });
  const m = (await api(rs.url, admin, 'GET', `/api/v1/machines/${mac}`)).body;
  assert.is(m.state, 'failed');
  assert.equal(m.failure, { from: 'installed', step: 'role-setup', reason: "`apt-get install -y kubelet=1.30.7-* kubeadm=1.30.7-* kubectl=1.30.7-*` exited 100: E: Version '1.30.7-*' for 'kubelet' was not found" });
  assert.equal(m.hostKeys, ['ssh-ed25519'], 'the host key is pinned for whoever logs in to look');
  const events = (await api(rs.url, admin, 'GET', `/api/v1/machines/${mac}/events`)).body as any[];
  const report17 = events.find((e) => e.type === 'role-setup');
  assert.is(report17.source, 'http 127.0.0.31');
  assert.equal(report17.data.log, APT_LOG.split('\n'));
  const fail = events.find((e) => e.type === 'state' && e.data.to === 'failed');
  assert.match(fail.message, /^failed at role-setup: `apt-get install/);
  assert.match(events.find((e) => e.type === 'phone-home').message, /but stays failed at role-setup: `apt-get install/);
  assert.not.ok(events.some((e) => e.type === 'state' && e.data.to === 'ready'));
  // `racksmith watch`, piped, prints this event as the machine's line: failed, with the reason.
  const line = changeLine(fail, rowOf(m));
  assert.match(line, /\s52:54:00:17:01:01\s+failed\s+state: failed at role-setup: `apt-get install -y kubelet=1\.30\.7-\* kubeadm=1\.30\.7-\* kubectl=1\.30\.7-\*` exited 100: E: Version '1\.30\.7-\*' for 'kubelet' was not found$/);
  // A later report (cloud-init run again by hand) does not undo the failure; retry is explicit.
  const later = await postSeed(mac, 'role-setup', 'status=0', '127.0.0.31');
  assert.equal(later.json(), { mac, state: 'failed' });
  // Bad input: 400 naming the field; another address: 403.
  const bad = await postSeed(mac, 'role-setup', 'status=x', '127.0.0.31');
  assert.is(bad.status, 400);
  assert.is(bad.json().error.field, 'status');
  assert.is((await postSeed(mac, 'role-setup', 'status=1', '127.0.0.33')).status, 403);
  assert.is((await api(rs.url, admin, 'GET', `/api/v1/machines/${mac}`)).body.failure.reason, m.failure.reason);
});

test('the real server: a successful report is recorded; the phone-home then makes the machine ready', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const mac = '52:54:00:17:01:02';
  const { report, phoneHome } = await installAndReport(mac, '127.0.0.32', new URLSearchParams({ status: '0', command: '', log: '+ systemctl enable kubelet' }).toString());
  assert.equal(report, { status: 200, body: { mac, state: 'installed' } });
  assert.equal(phoneHome, { status: 200, body: { mac, state: 'ready' } });
  const events = (await api(rs.url, admin, 'GET', `/api/v1/machines/${mac}/events`)).body as any[];
  assert.is(events.find((e) => e.type === 'role-setup').message, 'role setup done');
  assert.ok(events.some((e) => e.type === 'state' && e.data.to === 'ready' && e.data.event === 'phoned-home'));
});

test.run();
