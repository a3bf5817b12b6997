import { spawn, type ChildProcess } from 'node:child_process';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { elapsed, renderTable, rowOf } from '../server/cli/watch.js';
import { CLI_PATH } from '../server/lib/paths.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { which } from './lib/tools.js';

/**
 * `racksmith watch` against the real server: piped, it prints the rack's machines, then one line
 * per change, only for that rack; under a pseudo-terminal it redraws a table. Stopped by SIGTERM
 * to its own PID, it exits 0.
 */
const test = suite('watch: racksmith watch');

let rs: RacksmithProcess;
let admin = '';
let viewer = '';
const children: ChildProcess[] = [];

interface Watcher {
  readonly child: ChildProcess;
  text(): string;
  waitFor(re: RegExp, what: string, timeoutMs?: number): Promise<string>;
  stop(): Promise<number | null>;
}

function startWatch(args: readonly string[], command: readonly string[] = [process.execPath, CLI_PATH, 'watch', ...args]): Watcher {
  const [cmd, ...rest] = command;
  const child = spawn(cmd as string, rest, {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: viewer, TERM: 'xterm' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return {
    child,
    text: () => out,
    async waitFor(re, what, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const m = re.exec(out);
        if (m) return m[0];
        if (child.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`watch output lacks ${what}:\n${out.slice(-2000)}`);
    },
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

test.before(async () => {
  rs = await startRacksmith();
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  viewer = (await rs.cli(['token', 'create', '--role', 'viewer'])).trim();
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'w', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  const csv = ['mac,hostname,role,cluster,rack', '52:54:00:77:00:01,w1,control-plane,w,r1', '52:54:00:77:00:02,w2,worker,w,r1', '52:54:00:77:00:03,w3,worker,w,r2'].join('\n');
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/machines/import', csv, 'text/csv')).status, 201);
});

test.after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rs?.stop();
  rs?.cleanup();
});

const T = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ';

test('piped: the rack at start, then one line per change, nothing from other racks; SIGTERM exits 0', async () => {
  const w = startWatch(['--rack', 'r1']);
  await w.waitFor(new RegExp(`^${T}  r1  w1  52:54:00:77:00:01  assigned  now, for \\d+s$`, 'm'), 'w1 at start');
  await w.waitFor(new RegExp(`^${T}  r1  w2  52:54:00:77:00:02  assigned  now`, 'm'), 'w2 at start');

  // Unassign w2 (assigned → discovered), give it back (→ assigned), rename w1, touch r2's machine.
  assert.is((await api(rs.url, admin, 'PATCH', '/api/v1/machines/52:54:00:77:00:02', { role: null, cluster: null })).status, 200);
  await w.waitFor(new RegExp(`^${T}  r1  w2  52:54:00:77:00:02  discovered  state: role or cluster removed$`, 'm'), 'w2 → discovered');
  assert.is((await api(rs.url, admin, 'PATCH', '/api/v1/machines/52:54:00:77:00:02', { role: 'worker', cluster: 'w' })).status, 200);
  await w.waitFor(new RegExp(`^${T}  r1  w2  52:54:00:77:00:02  assigned  state: assigned as worker of cluster w$`, 'm'), 'w2 → assigned');
  assert.is((await api(rs.url, admin, 'PATCH', '/api/v1/machines/52:54:00:77:00:03', { hostname: 'w3b' })).status, 200);
  assert.is((await api(rs.url, admin, 'PATCH', '/api/v1/machines/52:54:00:77:00:01', { hostname: 'w1b' })).status, 200);
  // The line carries the new name at once (the event says what changed).
  await w.waitFor(new RegExp(`^${T}  r1  w1b  52:54:00:77:00:01  assigned  machine.updated: updated hostname$`, 'm'), 'w1 renamed');
  assert.not.match(w.text(), /52:54:00:77:00:03/, 'no line about the r2 machine');
  assert.is(await w.stop(), 0);
  for (const line of w.text().trim().split('\n')) assert.match(line, new RegExp(`^${T}  `), `every line starts with a time: ${line}`);
});

test('a bad token: one line on stderr, exit 1', async () => {
  const w = startWatch(['--token', 'rs_not-a-token']);
  const code = await new Promise<number | null>((r) => w.child.on('exit', (c) => r(c)));
  assert.is(code, 1);
  assert.match(w.text(), /^racksmith: watch: 401 ERR_UNAUTHORIZED/);
});

test('on a terminal: the table is drawn in place with its columns', async () => {
  if (!which('script')) {
    assert.unreachable('util-linux script(1) is needed for the pseudo-terminal');
  }
  // script(1) gives the command a pseudo-terminal; its output is the terminal's.
  const cmd = `${process.execPath} ${CLI_PATH} watch --cluster w`;
  const w = startWatch([], ['script', '-qfec', cmd, '/dev/null']);
  await w.waitFor(/RACK\s+HOST\s+MAC\s+ROLE\s+STATE\s+STEP\s+DISK\s+FOR\s+LAST EVENT/, 'the table header');
  await w.waitFor(/r2\s+w3b\s+52:54:00:77:00:03\s+worker\s+assigned/, 'w3b in the table');
  assert.ok(w.text().includes('\x1b[H\x1b[2J'), 'redrawn in place');
  assert.is((await api(rs.url, admin, 'PATCH', '/api/v1/machines/52:54:00:77:00:03', { role: null, cluster: null })).status, 200);
  await w.waitFor(/racksmith watch — cluster w — 2 machines/, 'the unassigned machine leaves the cluster view');
  await w.stop();
});

test('table and elapsed helpers', () => {
  const now = new Date('2026-11-25T12:00:00Z');
  assert.is(elapsed('2026-11-25T11:59:55Z', now), '5s');
  assert.is(elapsed('2026-11-25T11:56:55Z', now), '3m05s');
  assert.is(elapsed('2026-11-25T09:58:00Z', now), '2h02m');
  const row = rowOf({ mac: '52:54:00:00:00:01', hostname: 'a', role: 'worker', rack: 'r1', cluster: 'c', state: 'provisioning', lastStep: 'ipxe', stateChangedAt: '2026-11-25T11:59:00Z' });
  assert.match(renderTable([row], now, 'h'), /r1\s+a\s+52:54:00:00:00:01\s+worker\s+provisioning\s+ipxe\s+-\s+1m00s/);
  // The disk its installer reported, as a tech reads it off the drive's label.
  const installed = rowOf({ mac: '52:54:00:00:00:02', hostname: 'b', role: 'worker', rack: 'r1', cluster: 'c', state: 'installed', lastStep: 'installed', stateChangedAt: '2026-11-25T11:59:00Z', installedDisk: { name: 'nvme0n1', sizeBytes: 6_442_450_944 } });
  assert.match(renderTable([installed], now, 'h'), /b\s+52:54:00:00:00:02\s+worker\s+installed\s+installed\s+nvme0n1 6\.4GB\s+1m00s/);
});

test.run();
