import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { buildImages } from '../lab/images.js';
import { LabClient, provision, watch, type MachineJson } from '../lab/flow.js';
import { CLUSTER, KUBERNETES_VERSION, Rack, UPGRADE_VERSION, VIP } from '../lab/rack.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — seven machines' leases, seeds, phone-homes and joins, then a rolling upgrade's reimages, all
// through the store (decision 2206: it ran once, on PostgreSQL, until CI's run had room for it).
// racksmith-test: alone — seven VMs under TCG already fill both cores.

/**
 * `npm run lab -- --machines 7`'s second day on the virtual rack: two load balancers sharing the
 * VIP (keepalived and haproxy in each), 3 control-plane nodes and 2 workers, BIOS and UEFI
 * mixed, under TCG. The cluster becomes ready behind the VIP, then `racksmith clusters upgrade
 * --max-unavailable 2 --wait` reimages every node through its BMC — the control-plane nodes one
 * at a time (etcd's quorum), the two workers together — and the cluster ends on the next minor.
 */
const test = suite('qemu: the virtual rack with a load-balancer pair, ready behind the VIP, then upgraded');
const missing = requirements(
  ['qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'dnsmasq', 'grub-mkrescue', 'xorriso', 'mformat', 'cpio', 'gzip', 'dropbear', 'dropbearkey', 'haproxy', 'keepalived', 'mkfs.ext4', 'debugfs', 'curl', 'apt-get', 'dpkg'],
  { netns: true },
);
let rack: Rack | null = null;

const print = (t: string): void => void process.stdout.write(t.split('\n').map((l) => (l ? `  ${l}` : l)).join('\n'));

test.after(async () => {
  await rack?.destroy();
});

test('7 machines: ready behind the VIP; a rolling upgrade through the CLI reimages every node and moves the cluster one minor', async () => {
  if (missing) return skipNote('the virtual rack with a pair', missing);
  const images = await buildImages();
  rack = new Rack({ tag: 'lp', machines: 7, firmware: 'mixed', images });
  const r = rack;
  await r.start();
  const c = new LabClient(r);
  const lbs = r.machines.filter((m) => m.role === 'loadbalancer');
  assert.is(lbs.length, 2, 'two load balancers from 7 machines');

  const startedAt = await provision(c, () => undefined);
  const first = await watch(c, startedAt, { timeoutMs: 15 * 60_000, print, tty: false }, (ms, state) => state === 'ready' && ms.every((m) => m.state === 'joined'));
  assert.ok(first.ok, first.ok ? '' : `${first.reason}\n${r.evidence()}`);
  const cluster = (await c.api('GET', `/clusters/${CLUSTER}`)).body;
  assert.is(cluster.controlPlaneEndpoint, `${VIP}:6443`, 'the endpoint is the VIP');
  assert.is(cluster.kubernetesVersion, KUBERNETES_VERSION);
  assert.match(await c.cli(['clusters', 'kubeconfig', CLUSTER]), `server: https://${VIP}:6443`);

  // The second day: every node reimaged, through the CLI as an admin would; both workers at once.
  const upgradedAt = Date.now();
  const u = await c.cliResult(['clusters', 'upgrade', CLUSTER, '--kubernetes-version', UPGRADE_VERSION, '--max-unavailable', '2', '--force', '--wait', '--timeout', String(30 * 60)], 31 * 60_000);
  assert.is(u.code, 0, `${u.stdout.slice(-2000)}\n${u.stderr.slice(-2000)}\n${r.evidence()}`);
  assert.match(u.stdout, /\bw1 in-flight, w2 in-flight\b/, 'the two workers were reimaged together (--max-unavailable 2)');
  assert.not.match(u.stdout, /cp\d in-flight[^—]*cp\d in-flight/, 'never two control-plane nodes at once');
  assert.match(u.stdout, new RegExp(`cluster ${CLUSTER} runs Kubernetes ${UPGRADE_VERSION.replace(/\./g, '\\.')}`));
  // The last node's rejoin settles the cluster a few seconds after the upgrade reports done.
  let after = (await c.api('GET', `/clusters/${CLUSTER}`)).body;
  for (let i = 0; i < 150 && after.state !== 'ready'; i++) {
    await new Promise((r) => setTimeout(r, 2000));
    after = (await c.api('GET', `/clusters/${CLUSTER}`)).body;
  }
  assert.is(after.state, 'ready');
  assert.is(after.kubernetesVersion, UPGRADE_VERSION);
  assert.is(after.upgrade?.state, 'done');
  const machines = (await c.api('GET', `/machines?cluster=${CLUSTER}`)).body as MachineJson[] | { items: MachineJson[] };
  const list = Array.isArray(machines) ? machines : machines.items;
  for (const m of list.filter((x) => x.role === 'control-plane' || x.role === 'worker')) {
    assert.is(m.state, 'joined', `${m.hostname ?? m.mac} after the upgrade`);
    assert.ok(Date.parse(m.stateChangedAt) > upgradedAt, `${m.hostname ?? m.mac} was reimaged and joined again`);
  }
  print(`\nready after ${((upgradedAt - startedAt) / 1000).toFixed(0)} s, upgraded in ${((Date.now() - upgradedAt) / 1000).toFixed(0)} s\n`);
});

test.run();
