import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { CLI_PATH, PACKAGE_ROOT as ROOT } from '../server/lib/paths.js';
import { startBmcSim, type BmcSim } from './lib/bmc-sim.js';
import { Testbed } from './lib/netns.js';
import { offlineUpstreams, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { startOpenUpstream, type OpenUpstream } from './lib/upstreams.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: sqlite only — the guide is the quick start on the embedded default, and its racksmith runs in a network namespace.
/**
 * docs/rack-guide.md, run: every ```sh block of the guide, in order, as one `sh -e` script against
 * a real `racksmith serve` (DHCP and TFTP off, on loopback), with `racksmith` on PATH as the built
 * CLI, the mirrors served locally (startOpenUpstream) and an ipmi_sim per BMC of the guide's CSV.
 * The guide's example values are replaced by the test bed's (`examples`, set in `before`); a
 * block starting with `# not run: <reason>` is left out (few, each with its reason);
 * `apt-get install -y` runs as `apt-get install --simulate` (the packages must resolve on
 * Debian 12) and `apt-get update` is left to the host; a line ending in `# Ctrl-C stops it` runs
 * for a few seconds, then is interrupted as a person would. The guide's `racksmith serve` line
 * (DHCP in proxy mode on eth1) is not part of the script: it is started as written inside a
 * network namespace of the test's own whose eth1 has the guide's address, and must come up with
 * DHCP and TFTP serving and stop cleanly.
 */
const test = suite('the rack guide: every command of docs/rack-guide.md, run');
const GUIDE = join(ROOT, 'docs', 'rack-guide.md');
const MAX_NOT_RUN = 3;
const SERVE = /^racksmith serve\b/;
const BMC_PASSWORD = 'calvin';
const missing = requirements(['ipmi_sim', 'ipmitool', 'apt-get', 'curl', 'timeout'], { root: true, netns: true });

interface Block {
  readonly line: number;
  readonly text: string;
  readonly notRun: string | null;
}

/** The guide's ```sh fences, with the line each starts on and its `# not run:` reason if any. */
function shellBlocks(markdown: string): Block[] {
  const out: Block[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```sh\s*$/.exec(lines[i] ?? '');
    if (!open) continue;
    const indent = open[1]?.length ?? 0;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j] ?? ''); j++) body.push((lines[j] ?? '').slice(indent));
    if (j >= lines.length) throw new Error(`line ${i + 1}: a sh block that never closes`);
    const reason = /^# not run: (.+)$/.exec(body[0] ?? '');
    out.push({ line: i + 1, text: body.join('\n'), notRun: reason ? (reason[1] ?? '').trim() : null });
    i = j;
  }
  return out;
}

/** One script: each block announced (so a failure names its line), the test bed's rewrites applied. */
function script(blocks: readonly Block[], examples: readonly (readonly [string, string])[]): string {
  const parts = ['set -e'];
  for (const b of blocks) {
    if (b.notRun !== null || b.text.split('\n').some((l) => SERVE.test(l))) continue;
    let t = b.text;
    for (const [from, to] of examples) t = t.split(from).join(to);
    t = t
      .split('\n')
      .map((l) => {
        if (/^apt-get update\b/.test(l)) return ': apt-get update left to the host';
        if (/# Ctrl-C stops it\s*$/.test(l)) return `{ timeout -s INT 3 ${l.replace(/#.*$/, '').trim()} || [ $? -eq 124 ]; }`;
        return l.replace(/^apt-get install -y /, 'apt-get install --simulate ');
      })
      .join('\n');
    parts.push(`echo '### guide block at line ${b.line}' >&2`, t);
  }
  return parts.join('\n') + '\n';
}

function runSh(text: string, cwd: string, env: Record<string, string>, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-ex'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      out += `\n(killed after ${timeoutMs} ms)\n`;
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
    child.stdin?.end(text);
  });
}

const guide = readFileSync(GUIDE, 'utf8');
const blocks = shellBlocks(guide);
let rs: RacksmithProcess | null = null;
let upstream: OpenUpstream | null = null;
const sims: BmcSim[] = [];
let work = '';
let env: Record<string, string> = {};
let examples: [string, string][] = [];

test.before(async () => {
  if (missing) return;
  work = mkdtempSync(join(tmpdir(), 'rs-guide-'));
  const bin = join(work, 'bin');
  mkdirSync(bin);
  mkdirSync(join(work, 'home'));
  writeFileSync(join(bin, 'racksmith'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI_PATH)} "$@"\n`);
  chmodSync(join(bin, 'racksmith'), 0o755);
  upstream = await startOpenUpstream(['1.30.6']);
  // No pause between two machines' power-on: the BMCs are simulated, and the suite stays short.
  rs = await startRacksmith({ env: { ...upstream.env, RACKSMITH_RACK_POWER_DELAY_SECONDS: '0' } });
  // Each BMC of the guide's CSV, simulated on its own loopback address (a second octet of this
  // run's own), port 623 as a real one: only the example network's prefix changes.
  const net = `127.${20 + Math.floor(Math.random() * 200)}.1.`;
  const bmcs = [...new Set([...guide.matchAll(/\b10\.77\.1\.(\d+)\b/g)].map((m) => m[1] as string))];
  for (const host of bmcs) sims.push(await startBmcSim({ name: `guide-${host}`, password: BMC_PASSWORD, address: `${net}${host}`, port: 623 }));
  examples = [
    ['http://10.77.0.1:8080', rs.url],
    ['/var/lib/racksmith', rs.dataDir],
    ['10.77.1.', net],
    // No `racksmith` user here: the test bed's racksmith runs as root, so the CLI does too.
    ['runuser -u racksmith -- ', 'runuser -u root -- '],
  ];
  env = {
    PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    HOME: join(work, 'home'),
    LANG: 'C.UTF-8',
  };
});

test.after(async () => {
  await Promise.allSettled(sims.map((s) => s.stop()));
  if (rs) {
    await rs.stop();
    rs.cleanup();
  }
  await upstream?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the guide is linked from the README and its blocks are found', () => {
  assert.match(readFileSync(join(ROOT, 'README.md'), 'utf8'), '(docs/rack-guide.md)');
  assert.ok(blocks.length >= 10, `only ${blocks.length} sh blocks found`);
  const skipped = blocks.filter((b) => b.notRun !== null);
  assert.ok(skipped.length <= MAX_NOT_RUN, `${skipped.length} blocks are not run: keep them few`);
  for (const b of skipped) assert.ok((b.notRun ?? '').length > 10, `line ${b.line}: say why it is not run`);
});

test('the extraction: fences, reasons, rewrites', () => {
  const md = 'text\n```sh\necho a\n```\n\n  ```sh\n  # not run: it powers the real world\n  reboot\n  ```\n```sh\napt-get update\napt-get install -y ipxe\nracksmith watch --rack r1   # Ctrl-C stops it\n```\n```ini\nx=1\n```\n';
  const bs = shellBlocks(md);
  assert.equal(bs.length, 3);
  assert.equal(bs[1]?.notRun, 'it powers the real world');
  const s = script(bs, [['r1', 'r9']]);
  assert.ok(!s.includes('reboot'));
  assert.ok(s.includes('apt-get install --simulate ipxe'));
  assert.ok(s.includes('{ timeout -s INT 3 racksmith watch --rack r9 || [ $? -eq 124 ]; }'));
  assert.ok(!/^apt-get update/m.test(s));
  assert.throws(() => shellBlocks('```sh\necho open\n'), /never closes/);
});

test('every command of the guide runs against the test bed', async () => {
  if (missing) return skipNote('rack guide', missing);
  const text = script(blocks, examples);
  const started = Date.now();
  const r = await runSh(text, work, env, 180_000);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const failedAt = [...r.out.matchAll(/### guide block at line (\d+)/g)].pop()?.[1];
  assert.is(r.code, 0, `the guide's block at line ${failedAt ?? '?'} failed (exit ${r.code}):\n${r.out.slice(-4000)}\n--- racksmith:\n${rs?.output().slice(-2000)}`);
  process.stdout.write(`\n  rack guide: ${blocks.filter((b) => !b.notRun).length} blocks ran in ${seconds} s\n`);
  // What the commands did, seen from the other side: the CSV's machines in the inventory, and
  // the rack power-on reached every BMC.
  assert.match(r.out, /lb1/);
  assert.match(r.out, /ok\s+Kubernetes apt repository/);
  for (const s of sims) assert.ok(s.sets().some((c) => /power|0x01|on/i.test(c.args)), `${s.name} was never powered: ${JSON.stringify(s.calls())}`);
  if (process.env['RACK_GUIDE_OUTPUT']) writeFileSync(process.env['RACK_GUIDE_OUTPUT'], r.out);
});

test("the guide's racksmith serve line starts as written, on eth1 in proxy mode", async () => {
  if (missing) return skipNote('rack guide', missing);
  const lines = blocks.filter((b) => !b.notRun).flatMap((b) => b.text.split('\n').filter((l) => SERVE.test(l)));
  assert.is(lines.length, 1, 'one racksmith serve line');
  const args = (lines[0] ?? '').replace(/#.*$/, '').trim().split(/\s+/).slice(2);
  const addr = args[args.indexOf('--advertise-address') + 1] ?? '';
  const iface = args[args.indexOf('--dhcp-interface') + 1] ?? '';
  assert.ok(/^\d+\.\d+\.\d+\.\d+$/.test(addr) && iface, `the serve line names an interface and an address: ${lines[0]}`);
  const bed = new Testbed('rg');
  const data = mkdtempSync(join(tmpdir(), 'rs-guide-serve-'));
  try {
    const ns = await bed.addNamespace('s');
    await bed.ip(ns, ['link', 'add', iface, 'type', 'veth', 'peer', 'name', 'peer0']);
    await bed.ip(ns, ['addr', 'add', `${addr}/24`, 'dev', iface]);
    await bed.ip(ns, ['link', 'set', iface, 'up']);
    await bed.ip(ns, ['link', 'set', 'peer0', 'up']);
    const argv = args.map((a) => (a === '/var/lib/racksmith' ? data : a));
    const child = bed.spawn(ns, process.execPath, [CLI_PATH, 'serve', ...argv], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: data, ...offlineUpstreams() } });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    let up = false;
    for (let i = 0; i < 100 && child.exitCode === null && !up; i++) {
      up = await bed.exec(ns, 'curl', ['-sf', '-m', '1', '-o', '/dev/null', `http://${addr}:8080/healthz`], { timeoutMs: 3000 }).then(
        () => true,
        () => false,
      );
      if (!up) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(up, `racksmith serve did not come up:\n${out.slice(-3000)}`);
    // HTTP answers before the services after it (DHCP, TFTP) have started: the "serving" line follows them.
    for (let i = 0; i < 100 && child.exitCode === null && !/"services":\{/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
    const serving = /"services":\{[^}]*\}/.exec(out)?.[0] ?? '';
    assert.match(serving, '"dhcp":"serving"', out.slice(-2000));
    assert.match(serving, '"tftp":"serving"', out.slice(-2000));
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 15_000)))]);
    clearTimeout(timer);
    assert.is(child.exitCode, 0, `racksmith serve did not stop cleanly on SIGTERM:\n${out.slice(-2000)}`);
  } finally {
    await bed.destroy();
    rmSync(data, { recursive: true, force: true });
  }
});

test.run();
