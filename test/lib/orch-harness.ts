import { Writable } from 'node:stream';
import type { Role } from '../../server/inventory/model.js';
import type { Store } from '../../server/inventory/store.js';
import type { SshHostKey } from '../../server/inventory/model.js';
import type { ClusterCa } from '../../server/lib/cluster-ca.js';
import { createClusterCa } from '../../server/lib/cluster-ca.js';
import { createLogger, type Logger } from '../../server/lib/log.js';
import type { Mac } from '../../server/lib/mac.js';
import type { Metrics } from '../../server/lib/metrics.js';
import { createOrchestrator, type Orchestrator, type OrchestratorSettings } from '../../server/orchestrator/service.js';
import type { RemoteShell } from '../../server/orchestrator/ssh.js';
import { FakeRack } from './fake-shell.js';
import { tempStore, type TempStore } from './inventory.js';

/** Helpers shared by the orchestrator's in-process tests. */

let sharedCa: Promise<ClusterCa> | null = null;
/** One CA per test process: making one costs an RSA key generation. */
export const testCa = (): Promise<ClusterCa> => (sharedCa ??= createClusterCa());

export function testSettings(over: Partial<OrchestratorSettings> = {}): OrchestratorSettings {
  return {
    sshUser: 'racksmith',
    sshPort: 22,
    connectTimeoutMs: 5000,
    stepTimeoutMs: 20_000,
    nodesReadyTimeoutMs: 5000,
    nodesReadyPollMs: 50,
    drainTimeoutMs: 10_000,
    attempts: 3,
    retryDelayMs: 20,
    retryMaxDelayMs: 200,
    cniManifests: { weave: 'https://example.test/weave.yaml', flannel: 'https://example.test/kube-flannel.yml', calico: 'https://example.test/calico.yaml' },
    imageRepository: 'registry.k8s.io',
    outputLines: 20,
    pollMs: 200,
    lockTtlMs: 5000,
    limits: { workerConcurrency: 3, certUploadMaxAgeMs: 100 * 60_000, tokenMaxAgeMs: 23 * 3600_000 },
    ...over,
  };
}

/** A logger whose every line is kept, to check that no secret reaches the log. */
export function memoryLogger(): { log: Logger; text: () => string } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { log: createLogger('debug', sink), text: () => text };
}

export interface Member {
  readonly hostname: string;
  readonly role: Role;
  readonly ip: string;
  readonly mac: Mac;
}

export function member(hostname: string, role: Role, ip: string): Member {
  const last = Number(ip.split('.').at(-1));
  return { hostname, role, ip, mac: `52:54:00:77:00:${last.toString(16).padStart(2, '0')}` as Mac };
}

export async function addMembers(inv: Pick<Store, 'machines'>, cluster: string, members: readonly Member[]): Promise<void> {
  for (const m of members) await inv.machines.create({ mac: m.mac, hostname: m.hostname, role: m.role, cluster, ip: m.ip });
}

/** What the boot side does when a machine phones home: pin its host keys, then `ready`. */
export async function phoneHome(inv: Pick<Store, 'machines'>, mac: Mac, keys: readonly SshHostKey[]): Promise<void> {
  await inv.machines.transition(mac, 'installer-served', { source: 'test' });
  await inv.machines.transition(mac, 'installed', { source: 'test' });
  await inv.machines.setHostKeys(mac, keys);
  await inv.machines.transition(mac, 'phoned-home', { source: 'test', message: 'phoned home' });
}

export interface Harness {
  readonly orchestrator: Orchestrator;
  readonly logText: () => string;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  owner?: string;
  settings?: Partial<OrchestratorSettings>;
  now?: () => Date;
  metrics?: Metrics;
}

export async function startOrchestrator(inv: Store, shell: RemoteShell, opts: HarnessOptions = {}): Promise<Harness> {
  const { log, text } = memoryLogger();
  const orchestrator = createOrchestrator({
    inventory: inv,
    orchestration: inv.orchestration,
    shell,
    privateKey: async () => 'not used by fakes',
    settings: testSettings(opts.settings),
    owner: opts.owner ?? 'test-instance',
    holder: `test ${opts.owner ?? ''}`,
    now: opts.now,
    makeCa: testCa,
    metrics: opts.metrics,
  });
  const abort = new AbortController();
  await orchestrator.start({ signal: abort.signal, log, fatal: (err) => log.error({ err }, 'fatal') });
  return {
    orchestrator,
    logText: text,
    async stop() {
      abort.abort();
      await orchestrator.stop();
    },
  };
}

export interface FakeRackRun {
  readonly inv: TempStore;
  readonly rack: FakeRack;
  readonly h: Harness;
}

/** A fresh store and in-memory rack with an orchestrator on them, torn down whatever the test does. */
export async function onFakeRack(fn: (run: FakeRackRun) => Promise<void>, opts: HarnessOptions = {}): Promise<void> {
  const inv = await tempStore();
  try {
    const rack = new FakeRack();
    const h = await startOrchestrator(inv, rack, opts);
    try {
      await fn({ inv, rack, h });
    } finally {
      await h.stop();
    }
  } finally {
    await inv.destroy();
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 20_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
