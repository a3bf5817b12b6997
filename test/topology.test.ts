import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import type { Machine } from '../server/inventory/model.js';
import { apiEndpoint, loadBalancerProblem, loadBalancerReimageProblem, vipProblem, type VipFacts } from '../server/clusters/load-balancers.js';
import { parseRange } from '../server/lib/ipv4.js';
import { AUTOINSTALL_DIR } from '../server/lib/paths.js';
import { fillInterfaceLines, renderKeepalivedConfig, routerIdOf, vrrpFor } from '../server/orchestrator/lb-pair.js';
import { createRenderer } from '../server/render/templates.js';
import { seedContext } from '../server/seeds/context.js';
import { renderRoleConfig } from '../server/seeds/render.js';
import { INSTANCE_ID, SEED_SETTINGS, TOKEN, fixtureCluster, fixtureMachine, fixtureMembers } from './lib/seed-fixtures.js';
import { requirements } from './lib/tools.js';

/** The load-balancer pair's rules (one or two, the VIP, reimaging one) and its keepalived configuration. */
const test = suite('topology: load-balancer pair, VIP, keepalived');
const run = promisify(execFile);
const renderer = createRenderer(AUTOINSTALL_DIR);

const base = fixtureCluster('22.04');
const lb1 = fixtureMachine(base.name, '52:54:00:77:00:10', 'lb1', 'loadbalancer', '10.77.0.10', 'joined');
const lb2 = fixtureMachine(base.name, '52:54:00:77:00:0f', 'lb2', 'loadbalancer', '10.77.0.9', 'joined');
const cps = fixtureMembers(base.name).filter((m) => m.role !== 'loadbalancer');
const pair = { ...base, vip: '10.77.0.100' };

test('the endpoint: explicit, else the VIP, else the single load balancer', () => {
  assert.is(apiEndpoint(base, [lb1, ...cps]), '10.77.0.10:6443');
  assert.is(apiEndpoint(pair, [lb1, lb2, ...cps]), '10.77.0.100:6443');
  assert.is(apiEndpoint({ ...pair, controlPlaneEndpoint: 'api.lab:6443' }, [lb1, lb2]), 'api.lab:6443');
  assert.is(apiEndpoint(base, cps), null);
});

test('one load balancer, or two with a VIP and fixed addresses', () => {
  assert.is(loadBalancerProblem(base, [lb1, ...cps]), null);
  assert.is(loadBalancerProblem(pair, [lb1, lb2, ...cps]), null);
  assert.is(loadBalancerProblem(base, cps), null, 'none yet is not refused here');
  assert.match(loadBalancerProblem(base, [lb1, lb2]) ?? '', /two load balancers but no vip/);
  assert.match(loadBalancerProblem(pair, [lb1, { ...lb2, ip: null }]) ?? '', /lb2 .* have no ip/);
  const lb3 = fixtureMachine(base.name, '52:54:00:77:00:0e', 'lb3', 'loadbalancer', '10.77.0.8');
  assert.match(loadBalancerProblem(pair, [lb1, lb2, lb3]) ?? '', /3 load balancers: at most two/);
});

test('VIP: in the provisioning network, not the network or broadcast address, not racksmith\'s, no machine\'s, no other cluster\'s, outside the pool, not leased', () => {
  const f: VipFacts = { network: { address: '10.77.0.1', netmask: '255.255.255.0' }, pool: parseRange('10.77.0.150-10.77.0.199'), machines: [lb1, lb2], otherVips: [{ cluster: 'other', vip: '10.77.0.101' }], leasedTo: null };
  const cases: [string, Partial<VipFacts>, RegExp | null, boolean][] = [
    ['10.77.0.100', {}, null, false],
    ['10.78.0.100', {}, /outside the provisioning network/, false],
    ['10.77.0.0', {}, /network address/, false],
    ['10.77.0.255', {}, /broadcast address/, false],
    ['10.77.0.1', {}, /racksmith's own address/, true],
    ['10.77.0.10', {}, /machine lb1's address/, true],
    ['10.77.0.101', {}, /vip of cluster other/, true],
    ['10.77.0.160', {}, /inside the DHCP pool/, false],
    ['10.77.0.100', { leasedTo: '52:54:00:aa:bb:cc' }, /leased to 52:54:00:aa:bb:cc/, true],
    ['10.78.0.100', { network: null }, null, false],
    ['not-an-ip', {}, /not an IPv4 address/, false],
  ];
  for (const [vip, over, want, taken] of cases) {
    const p = vipProblem(vip, { ...f, ...over });
    if (want === null) assert.is(p, null, vip);
    else {
      assert.match(p?.reason ?? '', want, vip);
      assert.is(p?.taken, taken, `${vip}: conflict or bad input`);
    }
  }
});

test('reimaging a load balancer: one of a healthy pair yes; the only one, or the last healthy one, needs force', () => {
  assert.is(loadBalancerReimageProblem(lb1, [lb1, lb2, ...cps]), null);
  assert.match(loadBalancerReimageProblem(lb1, [lb1, ...cps]) ?? '', /only load balancer/);
  assert.match(loadBalancerReimageProblem(lb1, [lb1, { ...lb2, state: 'reimaging' }]) ?? '', /last healthy load balancer .*lb2 is reimaging/);
  assert.is(loadBalancerReimageProblem(cps[0] as Machine, [lb1, ...cps]), null, 'not a load balancer');
});

test('VRRP facts: the first by name is preferred; each names the other as its peer', () => {
  const members = [lb1, lb2, ...cps];
  assert.equal(vrrpFor(pair, members, lb1), { vip: '10.77.0.100', routerId: 100, priority: 200, self: '10.77.0.10', peers: ['10.77.0.9'] });
  assert.equal(vrrpFor(pair, members, lb2), { vip: '10.77.0.100', routerId: 100, priority: 100, self: '10.77.0.9', peers: ['10.77.0.10'] });
  assert.is(vrrpFor(base, members, lb1), null, 'no vip: no pair');
  assert.is(vrrpFor(pair, [lb1, ...cps], lb1), null, 'one load balancer: no VRRP');
  assert.is(routerIdOf('10.0.0.0'), 51);
});

const missingKeepalived = requirements(['keepalived']);

test('keepalived configuration: unicast peers, nopreempt, the haproxy check; accepted by keepalived -t once the interface is filled in', async () => {
  const v = vrrpFor(pair, [lb1, lb2], lb1);
  assert.ok(v);
  const conf = renderKeepalivedConfig(renderer, v, { cluster: 'lab', hostname: 'lb1' });
  assert.match(conf, /unicast_src_ip 10\.77\.0\.10\n/);
  assert.match(conf, /unicast_peer \{\n\s+10\.77\.0\.9\n\s+\}/);
  assert.match(conf, /state BACKUP\n\s+nopreempt/);
  assert.match(conf, /virtual_ipaddress \{\n\s+10\.77\.0\.100\/@LB_PREFIX@ dev @LB_INTERFACE@/);
  assert.match(conf, /track_script \{\n\s+racksmith_haproxy/);
  assert.throws(() => renderKeepalivedConfig(renderer, { ...v, peers: ['10.0.0.1; rm -rf /'] }, { cluster: 'lab', hostname: 'lb1' }), /not an IPv4 address/);
  assert.throws(() => fillInterfaceLines('/x', '$(reboot)'), /not an IPv4 address/);
  if (missingKeepalived) return;
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-keepalived-'));
  try {
    const file = join(dir, 'keepalived.conf');
    // keepalived -t wants a real, non-loopback interface: any of this host's.
    const iface = readdirSync('/sys/class/net').find((n) => n !== 'lo') ?? 'eth0';
    writeFileSync(file, conf.replace(/@LB_INTERFACE@/g, iface).replace(/@LB_PREFIX@/g, '32').replace('/etc/keepalived/racksmith-check-haproxy.sh', '/bin/true'));
    await run('keepalived', ['-t', '-f', file], { timeout: 20_000 });
    writeFileSync(file, conf.replace('vrrp_instance', 'vrrp_instanc'));
    await run('keepalived', ['-t', '-f', file], { timeout: 20_000 }).then(
      () => assert.unreachable('keepalived -t accepts a broken file'),
      () => undefined,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the role seed of a load balancer of a pair: keepalived installed, configured and started after haproxy; a single one gets none', () => {
  const members = [lb1, lb2, ...cps];
  const ctx = (c: typeof base, m: Machine, ms: Machine[]): Record<string, unknown> => seedContext({ machine: m, cluster: c, members: ms, installer: DEFAULT_INSTALLERS['22.04'], token: TOKEN, instanceId: INSTANCE_ID }, SEED_SETTINGS);
  const text = renderRoleConfig(renderer, ctx(pair, lb1, members));
  const doc = parseYaml(text) as { packages: string[]; write_files: { path: string; content: string; permissions: string }[] };
  assert.ok(doc.packages.includes('keepalived'));
  const conf = doc.write_files.find((f) => f.path === '/etc/racksmith/keepalived.conf');
  assert.match(conf?.content ?? '', /unicast_peer \{\n\s+10\.77\.0\.9\n/);
  assert.is(doc.write_files.find((f) => f.path === '/etc/keepalived/racksmith-check-haproxy.sh')?.permissions, '0755');
  const setup = doc.write_files.find((f) => f.path === '/usr/local/sbin/racksmith-role-setup')?.content ?? '';
  assert.ok(setup.indexOf('systemctl restart haproxy') < setup.indexOf('keepalived -t -f /etc/keepalived/keepalived.conf'), 'keepalived after haproxy');
  assert.match(setup, /lb_if=\$\(ip -o -4 addr show \| awk -v ip='10\.77\.0\.10'/);
  assert.match(setup, /systemctl restart keepalived/);
  const single = parseYaml(renderRoleConfig(renderer, ctx(base, lb1, [lb1, ...cps]))) as { packages: string[]; write_files: { path: string }[] };
  assert.not.ok(single.packages.includes('keepalived'));
  assert.not.ok(single.write_files.some((f) => f.path.includes('keepalived')));
});

test('the role seed during an upgrade: the new version once the control plane moved, the old one before', () => {
  const cp = cps[0] as Machine;
  const upgrade = { id: 'u1', from: '1.28.4', to: '1.29.6', state: 'running' as const, maxUnavailable: 1, requestedAt: '', updatedAt: '', reason: null, controlPlaneMoved: false };
  const versionIn = (c: typeof base): string => /kubeadm=([\d.]+)-\*/.exec(renderRoleConfig(renderer, seedContext({ machine: cp, cluster: c, members: [lb1, ...cps], installer: DEFAULT_INSTALLERS['22.04'], token: TOKEN, instanceId: INSTANCE_ID }, SEED_SETTINGS)))?.[1] ?? '';
  assert.is(versionIn({ ...base, upgrade }), '1.28.4');
  assert.is(versionIn({ ...base, upgrade: { ...upgrade, controlPlaneMoved: true } }), '1.29.6');
});

test.run();
