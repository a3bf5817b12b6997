import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { AUTOINSTALL_DIR } from '../server/lib/paths.js';
import { createRenderer } from '../server/render/templates.js';
import { Testbed } from './lib/netns.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The load balancer config works, not just parses: real haproxy, rendered from the seed's own
 * template, in a namespace in front of two listeners (in another namespace) standing in for API
 * servers — TLS on :6443 with `/healthz`, as kube-apiserver answers the template's HTTPS check.
 * It balances round robin, and a stopped backend is taken out by the health check (and put back
 * when it returns).
 */
const test = suite('haproxy: the rendered LB config balances and health-checks');
const missing = requirements(['haproxy', 'openssl'], { netns: true });
const node = process.execPath;

const LISTENER = `
const https = require('node:https');
const fs = require('node:fs');
const [addr, name, dir] = process.argv.slice(1);
https.createServer({ key: fs.readFileSync(dir + '/key.pem'), cert: fs.readFileSync(dir + '/cert.pem') }, (req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
  res.end(req.url === '/healthz' ? 'ok' : name);
}).listen(6443, addr, () => console.log('listening'));
`;
const CLIENT = `
const https = require('node:https');
const n = Number(process.argv[1]);
(async () => {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(await new Promise((resolve) => {
      const req = https.get({ host: '127.0.0.1', port: 6443, path: '/', rejectUnauthorized: false, agent: false, timeout: 3000 }, (res) => {
        let data = '';
        res.on('data', (d) => (data += d));
        res.on('end', () => resolve(data.trim() || 'empty'));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve('error'));
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
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=kube-apiserver', '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem')], { stdio: 'ignore' });
  const cfg = join(work, 'haproxy.cfg');
  const rendered = createRenderer(AUTOINSTALL_DIR).render('roles/haproxy.cfg.njk', {
    frontendPort: 6443,
    backends: [
      { name: 'cp1', address: '10.78.0.11', port: 6443 },
      { name: 'cp2', address: '10.78.0.12', port: 6443 },
    ],
  });
  // No syslog socket in a test namespace: the same config with logging to stderr.
  assert.match(rendered, /log \/dev\/log local0/);
  writeFileSync(cfg, rendered.replace('log /dev/log local0', 'log stderr local0'));

  // 30 s, and what the listener said if it died: it once had not started after 10 s beside two
  // other suites, and nothing told whether it was slow or gone.
  const started = (child: ReturnType<Testbed['spawn']>): Promise<void> =>
    new Promise((resolve, reject) => {
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const t = setTimeout(() => reject(new Error(`listener did not start in 30 s: ${stderr.slice(-500)}`)), 30_000);
      child.stdout?.on('data', () => {
        clearTimeout(t);
        resolve();
      });
      child.on('exit', (code, signal) => {
        clearTimeout(t);
        reject(new Error(`listener exited ${code ?? signal} before listening: ${stderr.slice(-500)}`));
      });
    });
  const cp1 = tb.spawn(apiNs, node, ['-e', LISTENER, '10.78.0.11', 'cp1', work]);
  let cp2 = tb.spawn(apiNs, node, ['-e', LISTENER, '10.78.0.12', 'cp2', work]);
  await Promise.all([started(cp1), started(cp2)]);
  // -db: stay in the foreground whatever the config's `daemon` says.
  const haproxy = tb.spawn(lb, 'haproxy', ['-db', '-f', cfg]);
  let haproxyLog = '';
  haproxy.stderr?.on('data', (d: Buffer) => (haproxyLog += d.toString()));
  haproxy.stdout?.on('data', (d: Buffer) => (haproxyLog += d.toString()));

  const connect = async (n: number): Promise<string[]> => (await tb!.exec(lb, node, ['-e', CLIENT, String(n)], { timeoutMs: 60_000 })).stdout.trim().split(',');
  const until = async (pred: (r: string[]) => boolean, n: number, what: string): Promise<string[]> => {
    let last: string[] = [];
    for (let i = 0; i < 80; i++) {
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

  cp2 = tb.spawn(apiNs, node, ['-e', LISTENER, '10.78.0.12', 'cp2', work]);
  await started(cp2);
  await until((r) => r.includes('cp2') && r.includes('cp1'), 6, 'cp2 back');
  assert.match(haproxyLog, /cp2 is UP/);
});

test.run();
