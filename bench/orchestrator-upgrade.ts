/**
 * The rolling upgrade's own overhead, for `npm run bench:orchestrator`: 1 LB + 3 control + 20
 * workers (real sshd, the instant stand-in), bootstrapped, then upgraded one minor up with
 * `maxUnavailable` workers at a time. racksmith's orchestrator and power service run in this
 * process, power on an instant BMC driver; the boot chain is played by the benchmark (a node
 * power-cycled is reinstalled with the new version and phones home at once).
 *
 * Measured: the upgrade's wall time from the request to `done`, and what of it was neither a
 * reimage (from the power cycle to the phone-home: the install, minutes on real machines) nor
 * the stand-in's own work (every kubeadm/kubectl call): that remainder is racksmith's — SSH,
 * planning, persistence, the removals' and checks' orchestration, the wait between a node's
 * phone-home and its join. Reported also per step kind.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { Machine } from '../server/inventory/model.js';
import { createOrchestrationRepo } from '../server/inventory/sqlite/orchestration.js';
import { silentLogger } from '../server/lib/log.js';
import type { PowerDriver } from '../server/power/driver.js';
import { createPowerService } from '../server/power/service.js';
import { createOrchestrator } from '../server/orchestrator/service.js';
import { createSshShell } from '../server/orchestrator/ssh.js';
import { tempInventory } from '../test/lib/inventory.js';
import { KubeBed, type NodeDef } from '../test/lib/kube-bed.js';
import { phoneHome, testCa, testSettings } from '../test/lib/orch-harness.js';

export interface UpgradeBenchResult {
  readonly wallMs: number;
  readonly reimageMs: number;
  readonly toolMs: number;
  readonly overheadMs: number;
  readonly nodes: number;
  readonly steps: { kind: string; ms: number; toolMs: number }[];
}

const instantDriver: PowerDriver = {
  name: 'instant',
  async status() {
    return { attempts: 1, cipherSuite: null, ms: 0, state: 'on' as const };
  },
  on: async () => ({ attempts: 1, cipherSuite: null, ms: 0 }),
  off: async () => ({ attempts: 1, cipherSuite: null, ms: 0 }),
  cycle: async () => ({ attempts: 1, cipherSuite: null, ms: 0 }),
  reset: async () => ({ attempts: 1, cipherSuite: null, ms: 0 }),
  setNextBoot: async () => ({ attempts: 1, cipherSuite: null, ms: 0 }),
  identify: async () => ({ attempts: 1, cipherSuite: null, ms: 0 }),
  facts: async () => ({ attempts: 1, cipherSuite: null, ms: 0, facts: { source: 'ipmi' as const, manufacturer: null, model: null, serial: null, biosVersion: null, firmwareVersion: null, nics: null } }),
};

/** Total length of the union of intervals [a, b] clipped to [from, to]. */
export function unionMs(intervals: readonly (readonly [number, number])[], from: number, to: number): number {
  const xs = intervals.map(([a, b]) => [Math.max(a, from), Math.min(b, to)] as const).filter(([a, b]) => b > a).sort((p, q) => p[0] - q[0]);
  let total = 0;
  let cur: [number, number] | null = null;
  for (const [a, b] of xs) {
    if (!cur || a > cur[1]) {
      if (cur) total += cur[1] - cur[0];
      cur = [a, b];
    } else cur[1] = Math.max(cur[1], b);
  }
  return total + (cur ? cur[1] - cur[0] : 0);
}

function toolCalls(bed: KubeBed): { node: string; start: number; end: number }[] {
  const f = join(bed.clusterDir, 'instant-calls');
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [node, , start, end] = l.split(' ');
      return { node: node ?? '', start: Number(start) / 1e6, end: Number(end) / 1e6 };
    });
}

export async function upgradeBench(defs: readonly NodeDef[], from: string, to: string, maxUnavailable: number): Promise<UpgradeBenchResult> {
  const bed = await KubeBed.create('ou', defs, { version: from, instant: true });
  const inv = tempInventory();
  const snapshots = mkdtempSync(join(tmpdir(), 'racksmith-bench-snap-'));
  const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'racksmith' });
  bed.authorize(pair.public);
  const abort = new AbortController();
  const log = silentLogger();
  const power = createPowerService({ inventory: inv, driver: instantDriver, settings: { rackConcurrency: 5, rackDelaySeconds: 0, removalTimeoutMs: 600_000, removalPollMs: 500 }, liveQuorum: (m) => orchestrator.liveQuorum(m) });
  const orchestrator = createOrchestrator({
    inventory: inv,
    orchestration: createOrchestrationRepo(inv.db, inv.now),
    shell: createSshShell(),
    privateKey: async () => pair.private,
    settings: testSettings({ pollMs: 1000, stepTimeoutMs: 120_000, nodesReadyTimeoutMs: 120_000, nodesReadyPollMs: 500, limits: { workerConcurrency: 5, certUploadMaxAgeMs: 100 * 60_000, tokenMaxAgeMs: 23 * 3600_000 }, snapshots: { dir: snapshots, keep: 5 } }),
    owner: 'bench',
    holder: 'bench',
    makeCa: testCa,
    reimage: (mac, opts) => power.reimage(mac, opts),
  });
  const windows: [number, number][] = [];
  let player: NodeJS.Timeout | null = null;
  try {
    await power.start({ signal: abort.signal, log, fatal: () => undefined });
    await orchestrator.start({ signal: abort.signal, log, fatal: () => undefined });
    await inv.clusters.create({ name: 'bench', ubuntuRelease: '22.04', kubernetesVersion: from, containerRuntime: 'containerd', cni: 'flannel', podSubnet: '10.244.0.0/16', serviceSubnet: '10.96.0.0/12' });
    for (const n of bed.nodes) {
      const bmc = n.role === 'loadbalancer' ? undefined : { driver: 'ipmi' as const, address: '127.0.0.1', port: 623, username: 'admin', password: 'bench-password' };
      await inv.machines.create({ mac: n.mac, hostname: n.name, role: n.role, cluster: 'bench', ip: n.ip, ...(bmc ? { bmc } : {}) });
    }
    for (const n of bed.nodes) await phoneHome(inv, n.mac, [n.hostKey]);
    const deadline = Date.now() + 600_000;
    const until = async (what: string, ok: () => Promise<boolean>): Promise<void> => {
      while (!(await ok())) {
        if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until('the bootstrap', async () => (await inv.clusters.get('bench'))?.state === 'ready');

    // The boot chain: a node power-cycled comes back with the new packages and phones home.
    const done = new Set<string>();
    let busy = false;
    player = setInterval(() => {
      if (busy) return;
      busy = true;
      void (async () => {
        for (const m of (await inv.machines.list({ cluster: 'bench' })) as Machine[]) {
          if (m.state !== 'reimaging') continue;
          const cycled = (await inv.events.list({ mac: m.mac, limit: 10_000 })).filter((e) => e.type === 'reimage' && e.data?.['step'] === 'power-cycled').at(-1);
          const id = String(cycled?.data?.['reimage'] ?? '');
          if (!cycled || done.has(id)) continue;
          done.add(id);
          const at = Date.parse(cycled.at);
          const key = await bed.reinstall(m.hostname as string, { version: to });
          await phoneHome(inv, m.mac, [key]);
          windows.push([at, Date.now()]);
        }
      })().finally(() => (busy = false));
    }, 20);

    const t0 = Date.now();
    await orchestrator.startUpgrade('bench', { kubernetesVersion: to, maxUnavailable }, 'bench');
    await until('the upgrade', async () => (await inv.clusters.get('bench'))?.upgrade?.state === 'done');
    const t1 = Date.now();
    const calls = toolCalls(bed).filter((c) => c.end >= t0 && c.start <= t1);
    const reimageMs = unionMs(windows, t0, t1);
    const toolMs = unionMs(calls.map((c) => [c.start, c.end] as const), t0, t1);
    const excluded = unionMs([...windows, ...calls.map((c) => [c.start, c.end] as [number, number])], t0, t1);
    const byMac = new Map(bed.nodes.map((n) => [n.mac as string, n.name]));
    const steps = (await createOrchestrationRepo(inv.db, inv.now).steps('bench'))
      .filter((s) => s.startedAt && s.endedAt && Date.parse(s.startedAt) >= t0 && s.kind !== 'upgrade-node')
      .map((s) => {
        const start = Date.parse(s.startedAt as string);
        const end = Date.parse(s.endedAt as string);
        const node = byMac.get(s.mac ?? '') ?? '';
        const toolMs = calls.filter((c) => c.node === node && c.start >= start - 1 && c.end <= end + 1).reduce((sum, c) => sum + (c.end - c.start), 0);
        return { kind: s.kind, ms: end - start, toolMs };
      });
    return { wallMs: t1 - t0, reimageMs, toolMs, overheadMs: t1 - t0 - excluded, nodes: bed.nodes.filter((n) => n.role !== 'loadbalancer').length, steps };
  } finally {
    if (player) clearInterval(player);
    abort.abort();
    await orchestrator.stop();
    await power.stop();
    await inv.destroy();
    rmSync(snapshots, { recursive: true, force: true });
    await bed.destroy();
  }
}
