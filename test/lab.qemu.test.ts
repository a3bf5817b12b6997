import { execFileSync } from 'node:child_process';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { buildImages } from '../lab/images.js';
import { figures, figuresTable, LabClient, machineOf, provision, watch, type EventJson, type MachineJson } from '../lab/flow.js';
import { Rack } from '../lab/rack.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — the whole rack's lifecycle (leases, seeds, phone-homes, the orchestrator's steps) goes through the store.
// racksmith-test: alone — four VMs under TCG already fill both cores.

/**
 * The whole mission end to end on the virtual rack (`npm run lab`'s code): 1 load balancer, 2
 * control-plane nodes, 1 worker, BIOS and UEFI mixed, under TCG, at most 3 booting at once.
 * Every machine is powered on through its ipmi_sim BMC by a rack power job, PXE-boots from
 * racksmith (DHCP, TFTP for UEFI firmware, iPXE), runs the installer, boots its disk, phones
 * home, and is orchestrated over SSH by racksmith: the cluster ends `ready` with every machine
 * `joined`, and haproxy's own log on the load balancer shows the worker's join going through it.
 * Then the worker is reimaged through the API: drain/delete on a control node, PXE + power cycle
 * through its BMC, reinstall, a new phone-home and host key, and it joins again.
 */
const test = suite('qemu: the virtual rack, from power-on to a ready cluster and a reimage');
const missing = requirements(
  ['qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'dnsmasq', 'grub-mkrescue', 'xorriso', 'mformat', 'cpio', 'gzip', 'dropbear', 'dropbearkey', 'haproxy', 'mkfs.ext4', 'debugfs', 'curl', 'apt-get', 'dpkg'],
  { netns: true },
);
let rack: Rack | null = null;
let prefix = '';
let work = '';

const print = (t: string): void => void process.stdout.write(t.split('\n').map((l) => (l ? `  ${l}` : l)).join('\n'));
const lastBoot = (text: string): string => text.slice(text.lastIndexOf('RACKSMITH-SYSTEM BOOTED'));


test.after(async () => {
  await rack?.destroy();
});

test('power-on to ready through BMCs, PXE, installer, phone-home and SSH; the worker joins through haproxy; a reimage rejoins it', async () => {
  if (missing) return skipNote('the virtual rack', missing);
  const images = await buildImages();
  rack = new Rack({ tag: 'lq', machines: 4, firmware: 'mixed', images });
  prefix = rack.bed.tb.prefix;
  work = rack.work;
  const r = rack;
  await r.start();
  const c = new LabClient(r);
  assert.ok(r.machines.some((m) => m.firmware === 'uefi') && r.machines.some((m) => m.firmware === 'bios'));
  const worker = machineOf(r, 'w1');
  const lb = machineOf(r, 'lb1');
  assert.is(worker.firmware, 'uefi', 'the reimaged worker takes the UEFI path (firmware PXE, BMC efiboot)');

  const startedAt = await provision(c, () => undefined);
  const first = await watch(c, startedAt, { timeoutMs: 8 * 60_000, print, tty: false }, (ms, state) => state === 'ready' && ms.every((m) => m.state === 'joined'));
  assert.ok(first.ok, `${first.ok ? '' : first.reason}\n${r.evidence()}`);
  print(`\n${figuresTable(await figures(c, startedAt))}`);
  assert.ok(r.maxBootingSeen >= 2 && r.maxBootingSeen <= 3, `machines booting at once: ${r.maxBootingSeen}`);

  for (const m of r.machines) {
    // Powered on through its own BMC: ipmi_sim's chassis program got "set power 1".
    assert.ok(m.bmc!.sets().some((s) => s.args === 'set power 1'), `${m.name}: no power-on at its BMC`);
    const events = await c.events(m.mac);
    const types = new Set(events.map((e) => e.type));
    for (const t of ['power', 'http.ipxe', 'http.seed', 'phone-home']) assert.ok(types.has(t), `${m.name}: no ${t} event (${[...types].join(' ')})`);
    assert.ok([...types].some((t) => t.startsWith('dhcp')), `${m.name}: no DHCP event`);
    if (m.firmware === 'uefi') assert.ok([...types].some((t) => t.startsWith('tftp')), `${m.name}: UEFI firmware PXE fetched no iPXE over TFTP`);
    const states = events.filter((e) => e.type === 'state').map((e) => e.data?.['to']);
    for (const s of ['provisioning', 'installed', 'ready', 'joining', 'joined']) assert.ok(states.includes(s), `${m.name}: never ${s}`);
    // The installed system booted from its disk and phoned home itself.
    assert.match(r.console(m), /RACKSMITH-SYSTEM PHONED-HOME/);
  }
  const cluster = (await c.api('GET', '/clusters/lab')).body;
  assert.is(cluster.state, 'ready');
  assert.is(cluster.controlPlaneEndpoint, `${lb.ip}:6443`);
  const kubeconfig = await c.cli(['clusters', 'kubeconfig', 'lab']);
  assert.match(kubeconfig, `server: https://${lb.ip}:6443`);

  // haproxy's own log on the load balancer: the worker's join reached a control node through it.
  const joinedVia = (log: string): string[] => [...log.matchAll(new RegExp(`${worker.ip.replace(/\./g, '\\.')}:\\d+ \\[[^\\]]+\\] k8s-api k8s-api/(cp\\d+) `, 'g'))].map((x) => x[1] as string);
  const beforeReimage = joinedVia(r.syslog(lb));
  assert.ok(beforeReimage.length > 0, `no connection from ${worker.ip} in haproxy's log:\n${r.syslog(lb).slice(-3000)}`);
  const consoleBefore = r.console(worker);
  const keyBefore = /RACKSMITH-SYSTEM SEED \S+ \S+ instance=(\S+)/.exec(lastBoot(consoleBefore))?.[1];
  assert.ok(keyBefore);

  // Reimage the worker through the API.
  const reimagedAt = Date.now();
  const re = await c.api('POST', `/machines/${worker.mac}/reimage`, {});
  assert.is(re.status, 202, JSON.stringify(re.body));
  assert.is(re.body.removal, 'pending');
  const second = await watch(c, reimagedAt, { timeoutMs: 5 * 60_000, print, tty: false }, (ms, state) => {
    const w = ms.find((m) => m.mac === worker.mac) as MachineJson;
    return state === 'ready' && w.state === 'joined' && Date.parse(w.stateChangedAt) > reimagedAt;
  });
  assert.ok(second.ok, `${second.ok ? '' : second.reason}\n${r.evidence()}`);
  const events: EventJson[] = (await c.events(worker.mac)).filter((e) => Date.parse(e.at) >= reimagedAt - 1000);
  const states = events.filter((e) => e.type === 'state').map((e) => e.data?.['to']);
  assert.equal(states, ['reimaging', 'provisioning', 'installed', 'ready', 'joining', 'joined']);
  assert.ok(events.some((e) => e.type === 'cluster.node-removed'), 'the orchestrator removed the node before the power cycle');
  assert.equal(events.filter((e) => e.type === 'reimage').map((e) => e.data?.['step']), ['remove-from-cluster', 'removed-from-cluster', 'next-boot-set', 'power-cycled']);
  assert.is(events.filter((e) => e.type === 'phone-home').length, 1, 'a new phone-home');
  // The BMC was told PXE for the next boot, then cycled the machine.
  const sets = worker.bmc!.sets().map((s) => s.args);
  assert.ok(sets.includes('set boot pxe'), sets.join(', '));
  // The removal ran on a control node: drain and delete, through the stand-in's API.
  const steps = (await c.api('GET', '/clusters/lab')).body.steps as { id: string; state: string }[];
  assert.ok(steps.some((s) => s.id.startsWith(`remove:${worker.mac}`) && s.state === 'done'), JSON.stringify(steps.map((s) => s.id)));
  assert.ok(steps.some((s) => s.id === `join:${worker.mac}#2` && s.state === 'done'), JSON.stringify(steps.map((s) => s.id)));
  // A new install: a new instance id, and the rejoin went through haproxy again.
  const keyAfter = /RACKSMITH-SYSTEM SEED \S+ \S+ instance=(\S+)/.exec(lastBoot(r.console(worker)))?.[1];
  assert.ok(keyAfter && keyAfter !== keyBefore, `instance ${keyBefore} → ${keyAfter}`);
  assert.ok(joinedVia(r.syslog(lb)).length > beforeReimage.length, 'the rejoin went through the load balancer');
  print(`\n${figuresTable((await figures(c, reimagedAt)).filter((f) => f.name === worker.name))}`);
});

test('nothing is left behind: namespaces, processes, files', async () => {
  if (missing) return;
  await rack?.destroy();
  rack = null;
  assert.ok(prefix, 'the rack was created');
  const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  assert.not.match(namespaces, prefix);
  const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  assert.not.ok(ps.split('\n').some((l) => l.includes(work) || l.includes(prefix)), 'a process of the rack still runs');
  const { existsSync } = await import('node:fs');
  assert.not.ok(existsSync(work));
});

test.run();
