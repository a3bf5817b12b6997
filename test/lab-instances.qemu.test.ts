import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { buildImages } from '../lab/images.js';
import { figures, figuresTable, LabClient, type EventJson, type MachineJson } from '../lab/flow.js';
import { CLUSTER, type Rack } from '../lab/rack.js';
import { instanceNameOf, provisionSite, Site } from '../lab/site.js';
import { openStore } from '../server/inventory/open.js';
import { PG_BIN } from './lib/postgres.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: alone — two racksmith instances, PostgreSQL and four VMs under TCG already fill both cores.

/**
 * `npm run lab -- --instances 2` with a host lost in the middle: two provisioning networks, each
 * with its own bridge, machines, BMCs and racksmith instance, both instances on one PostgreSQL
 * behind a router; one cluster spans the networks (lb1 and cp1 on the first, cp2 and w1 on the
 * second). While `kubeadm init` or the first join runs, the instance holding the cluster's lock is
 * killed with SIGKILL. The other takes the cluster over within 30 s (from the kill to its first
 * orchestration event), and the cluster still becomes ready, with exactly one `kubeadm init` run
 * on the machines (the stand-in's own record of its calls, read over SSH). The killed instance is
 * started again once the takeover is proven, as a site's service manager would: machines of its
 * network still on their way through PXE and the installer need its DHCP and HTTP; from then on
 * either may drive the cluster, never both at once (their logs' lock spells). The survivor's
 * API and event stream show every machine and every event, those of the dead instance's network
 * and those the dead instance wrote included.
 */
const test = suite('qemu: two racksmith instances on one PostgreSQL; kill -9 of the one orchestrating, the other takes over');
const missing = requirements(
  ['qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'dnsmasq', 'grub-mkrescue', 'xorriso', 'mformat', 'cpio', 'gzip', 'dropbear', 'dropbearkey', 'haproxy', 'mkfs.ext4', 'debugfs', 'curl', 'ssh', 'runuser', `${PG_BIN}/initdb`, `${PG_BIN}/postgres`],
  { netns: true },
);
let site: Site | null = null;
const prefixes: string[] = [];
const works: string[] = [];

const print = (t: string): void => void process.stdout.write(t.split('\n').map((l) => (l ? `  ${l}` : l)).join('\n'));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface StepJson {
  id: string;
  kind: string;
  machine: string;
  state: string;
  startedAt: string | null;
  endedAt: string | null;
}

/** The cluster view (its steps, machines and lock), read by field. */
async function detail(c: LabClient): Promise<any> {
  const r = await c.api('GET', `/clusters/${CLUSTER}`);
  if (r.status !== 200) throw new Error(`GET /clusters/${CLUSTER}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Every event the instance has, oldest first (the API pages by id). */
async function allEvents(c: LabClient): Promise<(EventJson & { mac: string | null; source: string })[]> {
  const out: (EventJson & { mac: string | null; source: string })[] = [];
  let after = 0;
  for (let page = 0; page < 50; page++) {
    const r = await c.api('GET', `/events?after=${after}&limit=10000`);
    if (r.status !== 200) throw new Error(`GET /events: ${r.status}`);
    const batch = r.body as (EventJson & { mac: string | null; source: string })[];
    out.push(...batch);
    if (batch.length < 10_000) break;
    after = batch[batch.length - 1]!.id;
  }
  return out;
}

/** The event stream of one instance, from the first event on, read by curl inside its namespace. */
function openStream(rack: Rack, token: string): { ids: () => Set<number>; child: ChildProcess } {
  let text = '';
  const child = rack.bed.tb.spawn(rack.bed.srv, 'curl', ['-sN', '-m', '1200', '-H', `Authorization: Bearer ${token}`, `${rack.base}/api/v1/events/stream?after=0`]);
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  return { ids: () => new Set([...text.matchAll(/^id: ?(\d+)$/gm)].map((m) => Number(m[1]))), child };
}

function evidence(s: Site): string {
  const esc = new RegExp(`${String.fromCharCode(27)}\\[[0-9;=?]*[a-zA-Z]`, 'g');
  return (
    s.machines.map((m) => `── ${m.name} console (tail):\n${s.racks.find((r) => r.machines.includes(m))!.console(m).replace(esc, '').slice(-1200)}`).join('\n') +
    s.racks.map((r, i) => `\n── racksmith ${instanceNameOf(i)} (tail):\n${r.racksmithLog().slice(-3000)}`).join('')
  );
}

test.after(async () => {
  await site?.destroy();
});

test('one cluster across two networks: kill -9 of the lock holder during the bootstrap, the other instance takes over within 30 s, ready with one kubeadm init', async () => {
  if (missing) return skipNote('two instances on one PostgreSQL', missing);
  const t0 = Date.now();
  const images = await buildImages();
  site = new Site({ tag: 'li', instances: 2, machines: 4, firmware: 'mixed', images, log: (l) => print(`${l}\n`) });
  const s = site;
  prefixes.push(s.tb.prefix, ...s.racks.map((r) => r.bed.tb.prefix));
  works.push(...s.racks.map((r) => r.work));
  await s.start();
  const clients = s.racks.map((r) => new LabClient(r, s));
  assert.equal(
    s.racks.map((r) => r.machines.map((m) => m.name)),
    [
      ['lb1', 'cp1'],
      ['cp2', 'w1'],
    ],
    'the cluster spans the two networks',
  );
  const startedAt = await provisionSite(s, clients, print);
  const token = clients[0]!.token;
  const streams = s.racks.map((r) => openStream(r, token));

  // The window: `kubeadm init` (past its first seconds: the command runs on the node) or the
  // first join running, at a moment when no machine of the holder's network is half-way through
  // its boot (each has phoned home, or is still held in POST by the boot gate, which keeps it
  // there until that network's racksmith is back). If the first join ends without such a
  // moment, a later join: every machine is up by the worker's.
  let victim: Rack | null = null;
  let running: StepJson | null = null;
  let lastIdBeforeKill = 0;
  const deadline = Date.now() + 6 * 60_000;
  while (Date.now() < deadline) {
    const d = await detail(clients[0]!);
    const steps = d.steps as StepJson[];
    if (d.state === 'ready' || d.state === 'failed') assert.unreachable(`the cluster is ${d.state} before the kill could land:\n${JSON.stringify(steps)}\n${evidence(s)}`);
    const joinsDone = steps.filter((x) => x.kind.startsWith('join-') && x.state === 'done').length;
    const inWindow =
      steps.find((x) => x.state === 'running' && ((x.kind === 'init' && Date.now() - Date.parse(x.startedAt ?? '') > 3000) || (x.kind.startsWith('join-') && joinsDone === 0))) ??
      steps.find((x) => x.state === 'running' && x.kind.startsWith('join-')) ??
      null;
    const holder = d.orchestration?.lock?.holder as string | undefined;
    const holderRack = holder ? s.rackOfHolder(holder) : null;
    if (inWindow && holderRack) {
      const ms = d.machines as MachineJson[];
      const safe = holderRack.machines.every((m) => ['ready', 'joining', 'joined'].includes(ms.find((x) => x.mac === m.mac)?.state ?? '') || ['off', 'held'].includes(holderRack.bootState(m)));
      if (safe) {
        // Held from here: a machine of its network powered on during the outage waits in POST.
        holderRack.holdBoots = true;
        victim = holderRack;
        running = inWindow;
        lastIdBeforeKill = Math.max(0, ...(await allEvents(clients[0]!)).map((e) => e.id));
        print(`killing ${holder} (-9) while ${inWindow.id} runs on ${inWindow.machine} (${joinsDone} join(s) done); its network: ${holderRack.machines.map((m) => `${m.name} ${ms.find((x) => x.mac === m.mac)?.state ?? '?'}/${holderRack.bootState(m)}`).join(', ')}\n`);
        break;
      }
    }
    await sleep(400);
  }
  assert.ok(victim && running, `the bootstrap never reached init or a join with the holder's network settled within 6 min\n${evidence(s)}`);
  const killedAt = Date.now();
  await victim.killRacksmith();
  const survivor = s.racks.find((r) => r !== victim) as Rack;
  const sc = clients[s.racks.indexOf(survivor)] as LabClient;
  const survivorName = instanceNameOf(s.racks.indexOf(survivor));
  const victimName = instanceNameOf(s.racks.indexOf(victim));

  // The takeover, from the survivor's own events: its first orchestration event after the kill.
  let takeoverAt: number | null = null;
  let holderAfter = '';
  for (const until = Date.now() + 60_000; Date.now() < until && takeoverAt === null; await sleep(500)) {
    const first = (await sc.api('GET', `/events?cluster=${CLUSTER}&after=${lastIdBeforeKill}&limit=10000`)).body as (EventJson & { source: string })[];
    const e = first.find((x) => x.source === 'orchestrator' && Date.parse(x.at) > killedAt);
    if (e) {
      takeoverAt = Date.parse(e.at);
      holderAfter = String((await detail(sc)).orchestration?.lock?.holder ?? '');
      print(`${survivorName} took over ${((takeoverAt - killedAt) / 1000).toFixed(1)} s after the kill: ${e.type} ${e.message.slice(0, 100)}\n`);
    }
  }
  assert.ok(takeoverAt !== null, `no orchestration event on ${survivorName} within 60 s of the kill\n${evidence(s)}`);
  assert.ok(takeoverAt - killedAt < 30_000, `the takeover took ${takeoverAt - killedAt} ms`);
  assert.ok(holderAfter === '' || holderAfter.startsWith(`${survivorName} `), `the lock after the kill: ${holderAfter}`);

  // A site's service manager starts the lost instance again; the cluster becomes ready.
  await victim.restartRacksmith();
  victim.holdBoots = false;
  const holders = new Set<string>();
  let last: { state: string; ms: MachineJson[] } = { state: '', ms: [] };
  const readyBy = Date.now() + 5 * 60_000;
  while (Date.now() < readyBy) {
    const d = await detail(sc);
    if (d.orchestration?.lock?.holder) holders.add(String(d.orchestration.lock.holder).split(' ')[0] ?? '');
    last = { state: d.state, ms: d.machines };
    if (d.state === 'failed' || last.ms.some((m) => m.state === 'failed')) break;
    if (d.state === 'ready' && last.ms.every((m) => m.state === 'joined')) break;
    await sleep(1000);
  }
  assert.is(last.state, 'ready', `the cluster after the takeover: ${last.state}, ${last.ms.map((m) => `${m.hostname}=${m.state}`).join(' ')}\n${evidence(s)}`);
  assert.ok(last.ms.length === 4 && last.ms.every((m) => m.state === 'joined'), last.ms.map((m) => `${m.hostname}=${m.state}`).join(' '));
  // The restarted instance may drive the cluster too, once the survivor has let its lock go
  // (the lock is held while there is work, and released when the cluster waits on machines); never
  // both at once. Each instance's spells of driving, from its log, must not overlap.
  assert.ok([...holders].every((h) => h === survivorName || h === victimName), `the lock holders seen after the takeover: ${[...holders].join(', ')}`);
  const spellsOf = (r: Rack): Spell[] => r.racksmithLog().split(RESTARTED).flatMap((run, i, runs) => drivingSpells(run, r === victim && i === 0 && runs.length > 1 ? killedAt : Number.POSITIVE_INFINITY));
  const [survivorSpells, victimSpells] = [spellsOf(survivor), spellsOf(victim)];
  assert.ok(survivorSpells.some((x) => x.from > killedAt), `${survivorName} never took the cluster's lock after the kill`);
  for (const a of survivorSpells) {
    for (const b of victimSpells) {
      assert.ok(a.to <= b.from || b.to <= a.from, `${survivorName} drove the cluster ${spellText(a)} and ${victimName} ${spellText(b)}: at the same time`);
    }
  }
  print(`lock holders seen after the takeover: ${[...holders].join(', ')}; spells: ${survivorName} ${survivorSpells.map(spellText).join(', ')}; ${victimName} ${victimSpells.map(spellText).join(', ')}\n`);
  print(`\n${figuresTable(await figures(sc, startedAt))}`);

  // Exactly one `kubeadm init`, by the stand-in's record on each control-plane node (over SSH
  // with racksmith's own key, from the survivor's namespace through the router).
  const proofDir = mkdtempSync(join(tmpdir(), 'racksmith-proof-'));
  const store = await openStore({ dataDir: proofDir, secretKey: s.secretKey, databaseUrl: s.pg!.local(s.databaseUrl), instanceName: 'proof' });
  const key = await store.secrets.get('global', 'ssh-private-key');
  await store.close();
  rmSync(proofDir, { recursive: true, force: true });
  assert.ok(key, 'racksmith\'s SSH key in the shared store');
  const keyFile = join(survivor.work, 'id_racksmith');
  writeFileSync(keyFile, key.endsWith('\n') ? key : `${key}\n`, { mode: 0o600 });
  let inits = 0;
  for (const m of s.machines.filter((x) => x.role === 'control-plane')) {
    const { stdout } = await survivor.bed.tb.exec(survivor.bed.srv, 'ssh', ['-i', keyFile, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=15', `root@${m.ip}`, 'cat /var/lib/standin/calls.jsonl'], { timeoutMs: 60_000 });
    const calls = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { tool: string; args: string[]; exit: number });
    const here = calls.filter((c) => c.tool === 'kubeadm' && c.args[0] === 'init' && c.args[1] !== 'phase');
    print(`${m.name}: ${calls.length} stand-in calls, ${here.length} kubeadm init\n`);
    inits += here.length;
  }
  assert.is(inits, 1, 'exactly one kubeadm init on the machines');
  const d = await detail(sc);
  // Killed while it ran, the step is done by the survivor: run again, or skipped when the node
  // shows the init that the dead instance started has happened (admin.conf), never a second init.
  const initStep = (d.steps as StepJson[]).find((x) => x.kind === 'init');
  assert.ok(initStep?.state === 'done' || initStep?.state === 'skipped', `the init step: ${JSON.stringify(initStep)}`);
  print(`the init step ended ${initStep?.state}\n`);

  // The survivor's API: every machine; each one's boot, install and join, the dead network's included.
  const machines = await sc.machines();
  assert.is(machines.length, 4);
  for (const m of s.machines) {
    const types = new Set((await sc.events(m.mac)).map((e) => e.type));
    for (const t of ['power', 'http.ipxe', 'http.seed', 'phone-home', 'state']) assert.ok(types.has(t), `${m.name} on ${survivorName}: no ${t} event (${[...types].join(' ')})`);
    assert.ok([...types].some((t) => t.startsWith('dhcp')), `${m.name} on ${survivorName}: no DHCP event`);
  }
  // The survivor's event stream, open since the power-on: every event of the site, in it.
  const events = await allEvents(sc);
  // Until the stream has caught up with the events read (30 s at most), not a fixed second: curl
  // and racksmith share the machine with QEMU under TCG and may be starved of CPU for a while.
  const stream = streams[s.racks.indexOf(survivor)]!;
  const missingFrom = (ids: Set<number>): typeof events => events.filter((e) => !ids.has(e.id));
  for (const until = Date.now() + 30_000; missingFrom(stream.ids()).length > 0 && Date.now() < until; ) await sleep(250);
  const streamed = stream.ids();
  const notStreamed = missingFrom(streamed);
  assert.is(notStreamed.length, 0, `${notStreamed.length} of ${events.length} events not in ${survivorName}'s stream, e.g. ${JSON.stringify(notStreamed.slice(0, 3))}`);
  const victimMacs = new Set(victim.machines.map((m) => m.mac));
  assert.ok(
    events.some((e) => e.mac && victimMacs.has(e.mac) && e.type.startsWith('dhcp') && streamed.has(e.id)),
    `the DHCP events ${victimName} served reached ${survivorName}'s stream`,
  );
  print(`${events.length} events, all in ${survivorName}'s stream; ${running!.id} was running at the kill; the whole run took ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
});

/** When one instance drove the cluster: from its "lock taken" to its "lock released" (ms since the epoch). */
interface Spell {
  readonly from: number;
  readonly to: number;
}
const RESTARTED = '── racksmith restarted ──';

/** The spells in one run's log; one still open at its end lasts until `end` (the kill, or for ever). */
function drivingSpells(log: string, end: number): Spell[] {
  const out: Spell[] = [];
  let open: number | null = null;
  for (const line of log.split('\n')) {
    if (!line.startsWith('{') || !line.includes('cluster lock')) continue;
    let rec: { msg?: string; time?: string | number; cluster?: string };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      continue;
    }
    if (rec.cluster !== CLUSTER) continue;
    const at = typeof rec.time === 'number' ? rec.time : Date.parse(String(rec.time));
    if (rec.msg?.startsWith('cluster lock taken')) open = at;
    else if (rec.msg === 'cluster lock released' && open !== null) {
      out.push({ from: open, to: at });
      open = null;
    }
  }
  if (open !== null) out.push({ from: open, to: end });
  return out;
}

const spellText = (x: Spell): string => `${new Date(x.from).toISOString().slice(11, 23)}–${Number.isFinite(x.to) ? new Date(x.to).toISOString().slice(11, 23) : 'on'}`;

test('nothing is left behind: namespaces, processes, files', async () => {
  if (missing) return;
  await site?.destroy();
  site = null;
  assert.ok(prefixes.length === 3, 'the site was created');
  const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const p of prefixes) assert.not.match(namespaces, p);
  const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  assert.not.ok(ps.split('\n').some((l) => works.some((w) => l.includes(w)) || prefixes.some((p) => l.includes(p))), 'a process of the site still runs');
  for (const w of works) assert.not.ok(existsSync(w));
});

test.run();
