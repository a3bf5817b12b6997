import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AUTOINSTALL_DIR } from '../server/lib/paths.js';
import { createRenderer } from '../server/render/templates.js';
import { Testbed } from './lib/netns.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The load balancer config works, not just parses: real haproxy, rendered from the seed's own
 * template, in a namespace in front of two TCP listeners (in another namespace) standing in for
 * API servers. It balances round robin, and a stopped backend is taken out by the health check
 * (and put back when it returns).
 */
const test = suite('haproxy: the rendered LB config balances and health-checks');
const missing = requirements(['haproxy'], { netns: true });
const node = process.execPath;

const LISTENER = `
const net = require('node:net');
const [addr, name] = process.argv.slice(1);
net.createServer((s) => { s.on('error', () => {}); s.end(name + '\\n'); }).listen(6443, addr, () => console.log('listening'));
`;
const CLIENT = `
const net = require('node:net');
const n = Number(process.argv[1]);
(async () => {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(await new Promise((resolve) => {
      const s = net.connect(6443, '127.0.0.1');
      let data = '';
      const t = setTimeout(() => { s.destroy(); resolve('timeout'); }, 3000);
      s.on('data', (d) => (data += d));
      s.on('error', () => {});
      s.on('close', () => { clearTimeout(t); resolve(data.trim() || 'closed'); });
    }));
  }
  console.log(out.join(','));
})();
`;

let tb: Testbed | null = null;
let work = '';

test.after(async () => {
  await tb?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('round robin over two API servers; a stopped one is taken out, a returning one put back', async () => {
  if (missing) return skipNote('haproxy in a namespace', missing);
  tb = new Testbed('b');
  const lb = await tb.addNamespace('lb');
  const apiNs = await tb.addNamespace('api');
  await tb.veth(lb, 'l0', apiNs, 'a0', '10.78.0.1/24', '10.78.0.11/24');
  await tb.ip(apiNs, ['addr', 'add', '10.78.0.12/24', 'dev', tb.name('a0')]);
  work = mkdtempSync(join(tmpdir(), 'racksmith-haproxy-'));
  const cfg = join(work, 'haproxy.cfg');
  const rendered = createRenderer(AUTOINSTALL_DIR).render('roles/haproxy.cfg.njk', {
    frontendPort: 6443,
    backends: [
      { name: 'cp1', address: '10.78.0.11', port: 6443 },
      { name: 'cp2', address: '10.78.0.12', port: 6443 },
    ],
  });
  // No syslog socket in a test namespace: the same config with logging to stderr.
  writeFileSync(cfg, rendered.replace('log /dev/log local0', 'log stderr local0'));

  const started = (child: ReturnType<Testbed['spawn']>): Promise<void> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('listener did not start')), 10_000);
      child.stdout?.on('data', () => {
        clearTimeout(t);
        resolve();
      });
    });
  const cp1 = tb.spawn(apiNs, node, ['-e', LISTENER, '10.78.0.11', 'cp1']);
  let cp2 = tb.spawn(apiNs, node, ['-e', LISTENER, '10.78.0.12', 'cp2']);
  await Promise.all([started(cp1), started(cp2)]);
  const haproxy = tb.spawn(lb, 'haproxy', ['-db', '-f', cfg]);
  let haproxyLog = '';
  haproxy.stderr?.on('data', (d: Buffer) => (haproxyLog += d.toString()));

  const connect = async (n: number): Promise<string[]> => (await tb!.exec(lb, node, ['-e', CLIENT, String(n)], { timeoutMs: 60_000 })).stdout.trim().split(',');
  const until = async (pred: (r: string[]) => boolean, n: number, what: string): Promise<string[]> => {
    let last: string[] = [];
    for (let i = 0; i < 40; i++) {
      last = await connect(n);
      if (pred(last)) return last;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`${what}: last answers ${last.join(',')}\n${haproxyLog.slice(-2000)}`);
  };

  const both = await until((r) => r.every((x) => x === 'cp1' || x === 'cp2') && r.includes('cp1') && r.includes('cp2'), 6, 'balancing');
  for (let i = 1; i < both.length; i++) assert.is.not(both[i], both[i - 1], `round robin alternates: ${both.join(',')}`);

  cp2.kill('SIGKILL');
  const after = await until((r) => r.every((x) => x === 'cp1'), 8, 'cp2 taken out');
  assert.equal(after, Array(8).fill('cp1'));
  assert.match(haproxyLog, /cp2 is DOWN/);

  cp2 = tb.spawn(apiNs, node, ['-e', LISTENER, '10.78.0.12', 'cp2']);
  await started(cp2);
  await until((r) => r.includes('cp2') && r.includes('cp1'), 6, 'cp2 back');
  assert.match(haproxyLog, /cp2 is UP/);
});

test.run();
