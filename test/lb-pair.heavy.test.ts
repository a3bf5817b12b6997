import { execFile, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { newSshKeyPair } from '../server/lib/ssh-identity.js';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createOrchestrator } from '../server/orchestrator/service.js';
import { createSshShell } from '../server/orchestrator/ssh.js';
import { tempStore } from './lib/inventory.js';
import { KubeBed, type BedNode } from './lib/kube-bed.js';
import { memoryLogger, phoneHome, testCa, testSettings, waitFor } from './lib/orch-harness.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The load-balancer pair with a VIP, for real: racksmith's orchestrator configures two load
 * balancers over SSH (real sshd nodes), then the test runs real haproxy and keepalived in each
 * load balancer's network and mount namespace from the files racksmith wrote there. A client in
 * a third namespace reaches a fake API backend (HTTPS, /healthz, and /whoami naming the address
 * a connection came from) through `vip:6443`; lb1 comes up first, lb2 joins as BACKUP. The
 * active load balancer's keepalived is killed by its PID: the client reaches the backend again
 * through the other one. Then the health check: the new active one's haproxy is killed, and the
 * VIP moves back.
 */
// racksmith-test: both engines — the lb-config steps persist in the store; short enough to run twice.
// racksmith-test: alone — keepalived's one-second VRRP adverts: a starved peer takes the VIP it should not.

const test = suite('load-balancer pair: VIP failover with real keepalived and haproxy');
const missing = requirements(['sshd', 'ssh-keygen', 'sudo', 'unshare', 'nsenter', 'haproxy', 'keepalived', 'openssl', 'curl', 'bash'], { netns: true });
const run = promisify(execFile);

/** The requirement is 5 s; on a loaded 2-core machine the assertion allows more, and the measured time is printed. */
const FAILOVER_BOUND_MS = 30_000;

const BACKEND = `
import { createServer } from 'node:https';
import { readFileSync } from 'node:fs';
const [key, cert, address] = process.argv.slice(2);
createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
  if (req.url === '/healthz') { res.writeHead(200); res.end('ok'); return; }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('from ' + req.socket.remoteAddress.replace(/^::ffff:/, '') + '\\n');
}).listen(6443, address);
`;

test('two load balancers configured by racksmith share the VIP; killing the active keepalived moves it, and so does a dead haproxy', async () => {
  if (missing) return skipNote('lb pair failover', missing);
  const bed = await KubeBed.create('v', [
    { name: 'lb1', role: 'loadbalancer' },
    { name: 'lb2', role: 'loadbalancer' },
    { name: 'cp1', role: 'control-plane' },
  ], { version: '1.30.6', hosts: ['client'] });
  const inv = await tempStore();
  const pair = newSshKeyPair();
  bed.authorize(pair.publicKey);
  const { log, text } = memoryLogger();
  const orchestrator = createOrchestrator({
    inventory: inv,
    orchestration: inv.orchestration,
    shell: createSshShell(),
    privateKey: async () => pair.privateKey,
    settings: testSettings({ pollMs: 300 }),
    owner: 'vip-test',
    holder: 'vip test',
    makeCa: testCa,
  });
  const abort = new AbortController();
  await orchestrator.start({ signal: abort.signal, log, fatal: () => undefined });
  const repo = inv.orchestration;
  const vip = `${bed.subnet}.100`;
  /** A process the test started; those run in a node keep their output's tail. */
  type Daemon = ChildProcess & { log?: () => string };
  const daemons = new Map<string, Daemon>();
  const client = bed.host('client');
  /** Runs inside a node's own network and mount namespace (its /etc is the one racksmith wrote). */
  const inNode = (n: BedNode, name: string, cmd: string[]): ChildProcess & { log: () => string } => {
    const spawned = bed.tb.spawn(n.ns, 'nsenter', ['-t', String(n.sshd?.pid), '-m', '--', ...cmd]);
    let out = '';
    spawned.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
    spawned.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
    const child = Object.assign(spawned, { log: () => out });
    daemons.set(name, child);
    return child;
  };
  const via = async (): Promise<string | null> => {
    try {
      const r = await run('ip', ['netns', 'exec', client.ns, 'curl', '-sk', '--max-time', '1', `https://${vip}:6443/whoami`], { timeout: 3000 });
      return /^from (\S+)/.exec(r.stdout)?.[1] ?? null;
    } catch {
      return null;
    }
  };
  const holder = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const n of [bed.node('lb1'), bed.node('lb2')]) {
      const r = await bed.tb.ip(n.ns, ['-o', '-4', 'addr', 'show']);
      if (r.includes(` ${vip}/`)) out.push(n.name);
    }
    return out;
  };
  /** Each keepalived's VRRP state changes, for a failure's message (the log above it may be cut). */
  const states = (): string => [...daemons].filter(([name]) => name.startsWith('keepalived')).map(([name, d]) => {
    const seen = (d.log?.() ?? '').split('\n').filter((l) => /Entering \w+ STATE|Script .* (succeeded|failed)|exit/.test(l)).slice(-4).map((l) => l.replace(/^.*?(\(racksmith_api\)|Script)/, '$1').trim());
    return `${name} (${d.exitCode ?? d.signalCode ?? 'running'}): ${seen.join(' | ') || 'no state yet'}`;
  }).join('\n');
  /** A timeout's message with where the VIP is and what each keepalived did (CI shows the message, not the log above it). */
  const explained = async (err: unknown, extra = ''): Promise<Error> => new Error(`${(err as Error).message}${extra}; the VIP is on [${(await holder()).join(', ')}]\n${states()}`);
  /** Polls the client's view every 100 ms until it answers through `want`; the time it took. */
  const until = async (want: string, what: string): Promise<number> => {
    const t0 = Date.now();
    let last: string | null = null;
    try {
      await waitFor(what, async () => (last = await via()) === want, FAILOVER_BOUND_MS, 100);
    } catch (err) {
      throw await explained(err, `; the client's last answer came through ${last ?? 'nothing'}`);
    }
    return Date.now() - t0;
  };
  try {
    const [lb1, lb2, cp1] = ['lb1', 'lb2', 'cp1'].map((n) => bed.node(n)) as [BedNode, BedNode, BedNode];
    await inv.clusters.create({ name: 'lab', ubuntuRelease: '24.04', kubernetesVersion: '1.30.6', containerRuntime: 'containerd', cni: 'flannel', podSubnet: '10.244.0.0/16', serviceSubnet: '10.96.0.0/12', vip });
    for (const n of [lb1, lb2, cp1]) await inv.machines.create({ mac: n.mac, hostname: n.name, role: n.role, cluster: 'lab', ip: n.ip });
    for (const n of [lb1, lb2]) await phoneHome(inv, n.mac, [n.hostKey]);
    await waitFor('both load balancers configured', async () => {
      const s = await repo.steps('lab');
      return [lb1, lb2].every((n) => s.some((x) => x.kind === 'lb-config' && x.mac === n.mac && x.state === 'done'));
    }, 60_000);
    const steps = await repo.steps('lab');
    for (const [n, prio, peer] of [[lb1, 200, lb2], [lb2, 100, lb1]] as const) {
      const rec = steps.find((x) => x.kind === 'lb-config' && x.mac === n.mac);
      assert.equal(rec?.data['vrrp'], { vip, routerId: 100, priority: prio, self: n.ip, peers: [peer.ip] });
      const conf = bed.etcFile(n.name, 'keepalived/keepalived.conf') ?? '';
      assert.match(conf, new RegExp(`virtual_ipaddress \\{\\s+${vip.replace(/\./g, '\\.')}/24 dev rs\\S+\\s+\\}`), 'the VIP on the interface that holds the node\'s address, with its prefix (filled in on the node)');
      assert.match(conf, new RegExp(`unicast_peer \\{\\s+${peer.ip.replace(/\./g, '\\.')}\\s+\\}`));
      assert.not.match(conf, /@LB_/);
      assert.match(bed.etcFile(n.name, 'haproxy/haproxy.cfg') ?? '', new RegExp(`server cp1 ${cp1.ip.replace(/\./g, '\\.')}:6443 check`));
    }
    const cluster = await inv.clusters.get('lab');
    assert.is(cluster?.vip, vip);

    // The fake API backend on cp1's address.
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-noenc', '-keyout', join(bed.dir, 'api.key'), '-out', join(bed.dir, 'api.crt'), '-subj', '/CN=kube-apiserver', '-days', '1'], { timeout: 60_000 });
    writeFileSync(join(bed.dir, 'backend.mjs'), BACKEND);
    daemons.set('backend', bed.tb.spawn(cp1.ns, process.execPath, [join(bed.dir, 'backend.mjs'), join(bed.dir, 'api.key'), join(bed.dir, 'api.crt'), cp1.ip]));
    const keepalived = ['keepalived', '-n', '-l', '-P', '-f', '/etc/keepalived/keepalived.conf', '-p', '/run/keepalived.pid', '-r', '/run/keepalived-vrrp.pid'];
    // lb1 comes up first and takes the VIP. (When both start in the same second, the higher
    // priority only gives lb1 a head start of 0.39 s, which a loaded CI host can lose; with
    // nopreempt the VIP then stays on lb2, a correct outcome this test must not depend on.)
    inNode(lb1, 'haproxy-lb1', ['haproxy', '-db', '-f', '/etc/haproxy/haproxy.cfg']);
    inNode(lb1, 'keepalived-lb1', keepalived);
    await until(lb1.ip, 'the client reaching the backend through lb1 (the VIP on lb1)');
    assert.equal(await holder(), ['lb1']);
    // lb2 joins as BACKUP and leaves the VIP where it is.
    inNode(lb2, 'haproxy-lb2', ['haproxy', '-db', '-f', '/etc/haproxy/haproxy.cfg']);
    const keepalived2 = inNode(lb2, 'keepalived-lb2', keepalived);
    await waitFor('lb2\'s keepalived in BACKUP state', async () => /Entering BACKUP STATE/.test(keepalived2.log()), FAILOVER_BOUND_MS, 100).catch(async (err: unknown) => {
      throw await explained(err);
    });
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await holder(), ['lb1'], 'a second load balancer joining leaves the VIP where it is');
    // Still answered through lb1 (one try may miss its 1 s on a loaded host; an answer through lb2 never counts).
    await until(lb1.ip, 'the client still reaching the backend through lb1 after lb2 joined');

    const keepalived1 = daemons.get('keepalived-lb1') as ChildProcess;
    const exited = new Promise((r) => keepalived1.once('exit', r));
    process.kill(keepalived1.pid as number, 'SIGTERM');
    const failover = await until(lb2.ip, 'the client reaching the backend through lb2 after lb1\'s keepalived was killed');
    await exited;
    assert.equal(await holder(), ['lb2']);
    process.stdout.write(`  VIP failover after the active keepalived was killed: the client answered through lb2 after ${failover} ms (requirement: 5,000 ms)\n`);

    // lb1's keepalived comes back as BACKUP (nopreempt: the VIP stays on lb2) …
    inNode(lb1, 'keepalived-lb1-again', keepalived);
    await new Promise((r) => setTimeout(r, 4000));
    assert.equal(await holder(), ['lb2'], 'a load balancer coming back does not take the VIP away again');
    // … and when lb2's haproxy dies, its health check fails and lb1 takes the VIP.
    process.kill(daemons.get('haproxy-lb2')?.pid as number, 'SIGKILL');
    const checked = await until(lb1.ip, 'the client reaching the backend through lb1 after lb2\'s haproxy died');
    assert.equal(await holder(), ['lb1']);
    process.stdout.write(`  VIP moved by the haproxy health check in ${checked} ms\n`);
  } catch (err) {
    for (const [name, d] of daemons) process.stdout.write(`--- ${name}:\n${(d.log?.() ?? '').slice(-3000)}\n`);
    process.stdout.write(text().slice(-5000));
    throw err;
  } finally {
    for (const d of daemons.values()) if (d.exitCode === null && d.signalCode === null) d.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    abort.abort();
    await orchestrator.stop();
    await inv.destroy();
    await bed.destroy();
  }
});

test.run();
