/**
 * `npm run bench:orchestrator`: the HA bootstrap of 1 load balancer + 3 control-plane nodes +
 * 20 workers (real sshd, one network namespace each) with an instant kubeadm stand-in, so what
 * is measured is the orchestration itself: SSH, sudo, probes, persistence, events, planning.
 *
 * Peer, in the same run: the same scripts driven by a plain bash script with OpenSSH's `ssh`
 * (the manual recipe automated the usual way: serial control joins, `xargs -P` for workers,
 * no probes, no persistence, no events). Reported: wall time of both and their ratio, and
 * racksmith's time per step split into the tools' own time and racksmith's overhead.
 *
 * Then the rolling upgrade of the same shape, one minor up (bench/orchestrator-upgrade.ts): its wall
 * time split into the reimages, the stand-in's work and racksmith's own overhead.
 *
 * The npm script runs it under the machine-wide heavy lock (`flock /tmp/racksmith-heavy.lock`).
 * BENCH_RUNS (default 3) and BENCH_UPGRADE_RUNS (default 1) set the repetitions; medians are printed.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ssh2 from 'ssh2';
import { openSqliteInventory, type SqliteInventory } from '../server/inventory/sqlite/index.js';
import { createOrchestrationRepo } from '../server/inventory/sqlite/orchestration.js';
import type { StepRecord } from '../server/inventory/store.js';
import { createClusterCa } from '../server/lib/cluster-ca.js';
import { discoveryHash, newBootstrapToken, newCertificateKey } from '../server/lib/cluster-secrets.js';
import { AUTOINSTALL_DIR } from '../server/lib/paths.js';
import { createSecretBox, loadSecretKey } from '../server/lib/secrets.js';
import { applyCniScript, getNodesScript, haproxyScript, initScript, joinScript, prepareScript, readAdminConfScript, shellCommand } from '../server/orchestrator/commands.js';
import { KUBEADM_TEMPLATES_DIR, criSocket, renderHaproxyConfig, renderKubeadmConfig } from '../server/orchestrator/kubeadm-config.js';
import { createRenderer } from '../server/render/templates.js';
import { KubeBed, SSH_USER, type NodeDef } from '../test/lib/kube-bed.js';
import { phoneHome } from '../test/lib/orch-harness.js';
import { api, startRacksmith } from '../test/lib/racksmith.js';
import { requirements } from '../test/lib/tools.js';
import { upgradeBench, type UpgradeBenchResult } from './orchestrator-upgrade.js';

const run = promisify(execFile);
const VERSION = '1.28.4';
const WORKERS = 20;
const CONCURRENCY = 5;
const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
const UPGRADE_RUNS = Number(process.env['BENCH_UPGRADE_RUNS'] ?? 1);
const UPGRADE_TO = '1.29.10';
const UPGRADE_MAX_UNAVAILABLE = 5;
const DEFS: NodeDef[] = [
  { name: 'lb1', role: 'loadbalancer' },
  ...[1, 2, 3].map((i) => ({ name: `cp${i}`, role: 'control-plane' as const })),
  ...Array.from({ length: WORKERS }, (_, i) => ({ name: `w${String(i + 1).padStart(2, '0')}`, role: 'worker' as const })),
];

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};
const fmt = (ms: number): string => (Number.isNaN(ms) ? '—' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);

interface ToolCall {
  readonly node: string;
  readonly start: number;
  readonly end: number;
}

function toolCalls(bed: KubeBed): ToolCall[] {
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

async function peer(bed: KubeBed): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-bench-peer-'));
  try {
    const pair = ssh2.utils.generateKeyPairSync('ed25519');
    bed.authorize(pair.public);
    writeFileSync(join(dir, 'key'), pair.private, { mode: 0o600 });
    writeFileSync(join(dir, 'known_hosts'), bed.nodes.map((n) => `${n.ip} ${n.hostKey.key}`).join('\n') + '\n');
    const ca = await createClusterCa();
    const token = newBootstrapToken();
    const certKey = newCertificateKey();
    const lb = bed.node('lb1');
    const endpoint = `${lb.ip}:6443`;
    const cluster = { name: 'bench', ubuntuRelease: '22.04', kubernetesVersion: VERSION, containerRuntime: 'containerd', cni: 'flannel', podSubnet: '10.244.0.0/16', serviceSubnet: '10.96.0.0/12', controlPlaneEndpoint: null, state: 'pending', createdAt: '', updatedAt: '' } as const;
    const cps = ['cp1', 'cp2', 'cp3'].map((n) => bed.node(n));
    const write = (name: string, text: string): string => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    write('lb.sh', haproxyScript(renderHaproxyConfig(createRenderer(AUTOINSTALL_DIR), cps.map((c) => ({ name: c.name, address: c.ip, port: 6443 })))));
    const config = renderKubeadmConfig(createRenderer(KUBEADM_TEMPLATES_DIR), { cluster, endpoint, node: { name: 'cp1', ip: cps[0]!.ip }, loadBalancer: { hostname: lb.name, ip: lb.ip }, bootstrapToken: token, certificateKey: certKey, podSubnet: '10.244.0.0/16', serviceSubnet: '10.96.0.0/12', imageRepository: 'registry.k8s.io' });
    write('prepare.sh', prepareScript(ca.certPem, ca.keyPem, config));
    write('init.sh', initScript());
    write('kubeconfig.sh', readAdminConfScript());
    write('cni.sh', applyCniScript('https://bench.test/kube-flannel.yml'));
    write('nodes.sh', getNodesScript());
    const join_ = (name: string, control: boolean): string =>
      write(
        `join-${name}.sh`,
        joinScript(
          {
            endpoint,
            token,
            caCertHash: discoveryHash(ca.certPem),
            nodeName: name,
            criSocket: criSocket(cluster),
            controlPlane: control ? { certificateKey: certKey, advertiseAddress: bed.node(name).ip } : undefined,
          },
          { resetFirst: false },
        ),
      );
    const workers = bed.nodes.filter((n) => n.role === 'worker');
    const lines = workers.map((w) => `${w.ip} ${join_(w.name, false)}`);
    const driver = `#!/bin/bash
set -euo pipefail
S() { ssh -i ${dir}/key -o BatchMode=yes -o UserKnownHostsFile=${dir}/known_hosts -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o LogLevel=ERROR ${SSH_USER}@"$1" "${shellCommand(SSH_USER, 900_000)}" < "$2" > /dev/null; }
export -f S
S ${lb.ip} ${dir}/lb.sh
S ${cps[0]!.ip} ${dir}/prepare.sh
S ${cps[0]!.ip} ${dir}/init.sh
S ${cps[0]!.ip} ${dir}/kubeconfig.sh
S ${cps[0]!.ip} ${dir}/cni.sh
S ${cps[1]!.ip} ${join_('cp2', true)}
S ${cps[2]!.ip} ${join_('cp3', true)}
printf '%s\\n' ${lines.map((l) => `'${l}'`).join(' ')} | xargs -P ${CONCURRENCY} -L 1 bash -c 'S "$0" "$1"'
S ${cps[0]!.ip} ${dir}/nodes.sh
`;
    write('peer.sh', driver);
    const t0 = performance.now();
    await run('bash', [join(dir, 'peer.sh')], { timeout: 300_000 });
    const ms = performance.now() - t0;
    const joined = readdirSync(join(bed.clusterDir, 'nodes.d')).length;
    if (joined !== 23) throw new Error(`peer: ${joined} nodes joined, expected 23`);
    return ms;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface RacksmithResult {
  readonly wallMs: number;
  readonly stepsWallMs: number;
  readonly steps: { kind: string; ms: number; toolMs: number }[];
  readonly gapMs: number;
}

async function racksmith(bed: KubeBed): Promise<RacksmithResult> {
  const rs = await startRacksmith({
    env: {
      RACKSMITH_ORCHESTRATOR_POLL_SECONDS: '1',
      RACKSMITH_ORCHESTRATOR_WORKER_CONCURRENCY: String(CONCURRENCY),
      RACKSMITH_ORCHESTRATOR_LOCK_SECONDS: '60',
      RACKSMITH_LOG_LEVEL: 'info',
    },
  });
  let db: SqliteInventory | null = null;
  try {
    const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
    const call = (method: string, path: string, body?: unknown) => api(rs.url, admin, method, `/api/v1${path}`, body);
    bed.authorize((await call('GET', '/ssh-key')).text);
    const c = await call('POST', '/clusters', { name: 'bench', ubuntuRelease: '22.04', kubernetesVersion: VERSION, containerRuntime: 'containerd', cni: 'flannel' });
    if (c.status !== 201) throw new Error(c.text);
    for (const n of bed.nodes) {
      const m = await call('POST', '/machines', { mac: n.mac, hostname: n.name, role: n.role, cluster: 'bench', ip: n.ip });
      if (m.status !== 201) throw new Error(m.text);
    }
    db = openSqliteInventory({ file: join(rs.dataDir, 'racksmith.db'), box: createSecretBox(loadSecretKey(undefined, rs.dataDir)) });
    for (const n of bed.nodes) await phoneHome(db, n.mac, [n.hostKey]);
    const t0 = performance.now();
    const deadline = Date.now() + 300_000;
    while ((await db.clusters.get('bench'))?.state !== 'ready') {
      if (Date.now() > deadline) throw new Error(`racksmith did not finish: ${JSON.stringify((await call('GET', '/clusters/bench')).body?.orchestration)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const wallMs = performance.now() - t0;
    const records: StepRecord[] = await createOrchestrationRepo(db.db, db.now).steps('bench');
    const calls = toolCalls(bed);
    const byMac = new Map(bed.nodes.map((n) => [n.mac as string, n.name]));
    const steps = records.map((s) => {
      const start = Date.parse(s.startedAt ?? '');
      const end = Date.parse(s.endedAt ?? '');
      const node = byMac.get(s.mac ?? '') ?? '';
      const toolMs = calls.filter((t) => t.node === node && t.start >= start - 1 && t.end <= end + 1).reduce((sum, t) => sum + (t.end - t.start), 0);
      return { kind: s.kind, ms: end - start, toolMs, start, end };
    });
    const first = Math.min(...steps.map((s) => s.start));
    const last = Math.max(...steps.map((s) => s.end));
    // Planning and scheduling: how long after one step of the serial chain ends the next starts.
    const chain = ['prepare', 'init', 'kubeconfig', 'cni', 'join-control', 'nodes-ready'];
    const serial = steps.filter((s) => chain.includes(s.kind)).sort((a, b) => a.start - b.start);
    const gaps = serial.slice(1).map((s, i) => s.start - (serial[i] as { end: number }).end);
    return { wallMs, stepsWallMs: last - first, steps, gapMs: median(gaps) };
  } finally {
    await db?.close();
    await rs.stop();
    rs.cleanup();
  }
}

async function main(): Promise<void> {
  const missing = requirements(['sshd', 'ssh', 'ssh-keygen', 'sudo', 'unshare', 'haproxy', 'openssl'], { netns: true });
  if (missing) throw new Error(`bench:orchestrator needs ${missing}`);
  const peerMs: number[] = [];
  const results: RacksmithResult[] = [];
  for (let i = 1; i <= RUNS; i++) {
    for (const which of ['peer', 'racksmith'] as const) {
      const bed = await KubeBed.create('ob', DEFS, { version: VERSION, instant: true });
      try {
        if (which === 'peer') peerMs.push(await peer(bed));
        else results.push(await racksmith(bed));
      } finally {
        await bed.destroy();
      }
    }
    process.stdout.write(`run ${i}/${RUNS}: peer ${fmt(peerMs.at(-1) ?? NaN)}, racksmith ${fmt(results.at(-1)?.stepsWallMs ?? NaN)} (steps) / ${fmt(results.at(-1)?.wallMs ?? NaN)} (from the last phone-home)\n`);
  }
  const kinds = [...new Set(results.flatMap((r) => r.steps.map((s) => s.kind)))];
  const rows = kinds.map((k) => {
    const all = results.flatMap((r) => r.steps.filter((s) => s.kind === k));
    return { k, n: all.length / results.length, ms: median(all.map((s) => s.ms)), tool: median(all.map((s) => s.toolMs)), over: median(all.map((s) => s.ms - s.toolMs)) };
  });
  const rsSteps = median(results.map((r) => r.stepsWallMs));
  const rsWall = median(results.map((r) => r.wallMs));
  const p = median(peerMs);
  process.stdout.write(
    `\nHA bootstrap, 1 LB + 3 control + ${WORKERS} workers, instant kubeadm stand-in, worker concurrency ${CONCURRENCY}, median of ${RUNS}\n\n` +
      `| driver | wall time | ratio to peer |\n|---|---|---|\n` +
      `| bash + OpenSSH ssh (peer) | ${fmt(p)} | 1.00 |\n` +
      `| racksmith, first step → ready | ${fmt(rsSteps)} | ${(rsSteps / p).toFixed(2)} |\n` +
      `| racksmith, last phone-home → ready (incl. ≤1 s poll pickup) | ${fmt(rsWall)} | ${(rsWall / p).toFixed(2)} |\n\n` +
      `| step | per cluster | step time | stand-in time | racksmith overhead |\n|---|---|---|---|---|\n` +
      rows.map((r) => `| ${r.k} | ${r.n} | ${fmt(r.ms)} | ${fmt(r.tool)} | ${fmt(r.over)} |`).join('\n') +
      `\n\nmedian gap between serial steps (plan + schedule + persist): ${fmt(median(results.map((r) => r.gapMs)))}\n`,
  );

  // The rolling upgrade's own overhead (bench/orchestrator-upgrade.ts).
  const upgrades: UpgradeBenchResult[] = [];
  for (let i = 1; i <= UPGRADE_RUNS; i++) {
    upgrades.push(await upgradeBench(DEFS, VERSION, UPGRADE_TO, UPGRADE_MAX_UNAVAILABLE));
    const u = upgrades.at(-1) as UpgradeBenchResult;
    process.stdout.write(`upgrade run ${i}/${UPGRADE_RUNS}: wall ${fmt(u.wallMs)}, reimages ${fmt(u.reimageMs)}, stand-in ${fmt(u.toolMs)}, racksmith ${fmt(u.overheadMs)}\n`);
  }
  const med = (f: (u: UpgradeBenchResult) => number): number => median(upgrades.map(f));
  const ukinds = [...new Set(upgrades.flatMap((u) => u.steps.map((s) => s.kind)))];
  const urows = ukinds.map((k) => {
    const all = upgrades.flatMap((u) => u.steps.filter((s) => s.kind === k));
    return { k, n: all.length / upgrades.length, ms: median(all.map((s) => s.ms)), tool: median(all.map((s) => s.toolMs)), over: median(all.map((s) => s.ms - s.toolMs)) };
  });
  const nodes = upgrades[0]?.nodes ?? 0;
  process.stdout.write(
    `\nRolling upgrade ${VERSION} → ${UPGRADE_TO}, 3 control + ${WORKERS} workers, maxUnavailable ${UPGRADE_MAX_UNAVAILABLE}, instant stand-in and BMCs, median of ${UPGRADE_RUNS}\n\n` +
      `| part of the upgrade's wall time | time | per node |\n|---|---|---|\n` +
      `| wall time, request → done | ${fmt(med((u) => u.wallMs))} | ${fmt(med((u) => u.wallMs) / nodes)} |\n` +
      `| reimages (power cycle → phone-home, the install) | ${fmt(med((u) => u.reimageMs))} | |\n` +
      `| stand-in's own work (kubeadm, kubectl, etcdctl), not overlapping a reimage | ${fmt(med((u) => u.wallMs - u.reimageMs - u.overheadMs))} | |\n` +
      `| **racksmith's own overhead** | **${fmt(med((u) => u.overheadMs))}** | ${fmt(med((u) => u.overheadMs) / nodes)} |\n\n` +
      `| step | per upgrade | step time | stand-in time | racksmith overhead |\n|---|---|---|---|---|\n` +
      urows.map((r) => `| ${r.k} | ${r.n} | ${fmt(r.ms)} | ${fmt(r.tool)} | ${fmt(r.over)} |`).join('\n') +
      '\n',
  );
}

await main();
