import type { Cluster, Cni, Machine } from '../inventory/model.js';
import { TransitionError, type MachineEventType } from '../inventory/lifecycle.js';
import type { EventRepo, MachineRepo, OrchestrationRepo, SecretRepo, StepRecord, StepWrite } from '../inventory/store.js';
import { ADMIN_CONF_SECRET, clusterScope, type ClusterSecrets } from '../lib/cluster-secrets.js';
import { AppError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Mac } from '../lib/mac.js';
import type { Renderer } from '../render/templates.js';
import { checkCompatibility, cniManifestUrl } from '../clusters/compatibility.js';
import {
  applyCniScript,
  deleteNodeScript,
  drainScript,
  etcdctlScript,
  getNodesScript,
  nodeStatusScript,
  resetScript,
  haproxyScript,
  initScript,
  joinScript,
  prepareScript,
  probes,
  readAdminConfScript,
  shellCommand,
  tokenRefreshScript,
  uploadCertsScript,
  PATHS,
  PROBE_BUSY,
} from './commands.js';
import { DEFAULT_POD_SUBNET, DEFAULT_SERVICE_SUBNET, criSocket, kubernetesMinor, renderHaproxyConfig, renderKubeadmConfig } from './kubeadm-config.js';
import { findEtcdMember, parseEtcdMembers, parseJoinCommands, parseNodes, tailLines } from './kubeadm-output.js';
import type { Backend, PlannedStep, RemovalData, StepKind } from './plan.js';
import { CHECK_SCRIPT, renderKeepalivedConfig, type Vrrp } from './lb-pair.js';
import { endpointHealthScript, etcdAllHealthy, keepSnapshot, liveQuorumAfterRemoval, memberHealthy, parseEndpointHealth, snapshotReadScript, snapshotSaveScript, type EtcdView } from './etcd.js';
import { clusterConfigPatchScript, clusterConfigReadScript, kubeProxyImageScript, kubeadmVersionProbe, parseVersion, withKubernetesVersion } from './upgrade.js';
import { createRedactor, type Redactor } from './redact.js';
import { SshError, type ExecResult, type RemoteSession, type RemoteShell } from './ssh.js';
import { ORCHESTRATOR_METRICS, instruments } from '../lib/metric-catalogue.js';
import { NO_METRICS, type Metrics } from '../lib/metrics.js';

/**
 * Runs one planned step on its node: connect (host key pinned), probe whether it already
 * happened, run it with a timeout while its output streams — redacted — into the machine's
 * events, retry transient faults with backoff, and persist the step record and the machine's
 * state at every turn. The only module that talks to nodes.
 */
export interface RunnerSettings {
  readonly sshUser: string;
  readonly sshPort: number;
  readonly connectTimeoutMs: number;
  readonly stepTimeoutMs: number;
  readonly nodesReadyTimeoutMs: number;
  readonly nodesReadyPollMs: number;
  /** `kubectl drain --timeout` when a node leaves its cluster (reimage). */
  readonly drainTimeoutMs: number;
  /** Tries per step (the first included) for faults worth retrying. */
  readonly attempts: number;
  readonly retryDelayMs: number;
  readonly retryMaxDelayMs: number;
  readonly cniManifests: Readonly<Record<Cni, string>>;
  readonly imageRepository: string;
  /** Output lines kept on the step record. */
  readonly outputLines: number;
  /** etcd snapshots before a control-plane node leaves: `<dir>/<cluster>/etcd-<time>.db`, the newest `keep`. */
  readonly snapshots?: { readonly dir: string; readonly keep: number } | undefined;
}

export interface RunnerDeps {
  readonly machines: Pick<MachineRepo, 'get' | 'transition'>;
  readonly events: Pick<EventRepo, 'append'>;
  readonly secrets: Pick<SecretRepo, 'put'>;
  readonly orchestration: Pick<OrchestrationRepo, 'saveStep'>;
  readonly shell: RemoteShell;
  readonly privateKey: string;
  readonly kubeadmTemplates: Renderer;
  readonly haproxyTemplates: Renderer;
  readonly settings: RunnerSettings;
  readonly now: () => Date;
  readonly log: Logger;
  readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** `racksmith_orchestration_*`: step durations by kind and outcome, failures by kind. */
  readonly metrics?: Metrics | undefined;
}

export interface StepJob {
  readonly cluster: Cluster;
  readonly step: PlannedStep;
  readonly endpoint: string;
  readonly members: readonly Machine[];
  readonly secrets: ClusterSecrets;
  readonly previous: StepRecord | undefined;
}

export type StepErrorCode = 'ERR_STEP_COMMAND' | 'ERR_STEP_TIMEOUT' | 'ERR_STEP_CHECK' | 'ERR_STEP_TARGET';

export class StepError extends Error {
  readonly code: StepErrorCode;
  readonly retryable: boolean;
  constructor(code: StepErrorCode, message: string, retryable: boolean) {
    super(message);
    this.name = 'StepError';
    this.code = code;
    this.retryable = retryable;
  }
}

/**
 * A failed `kubeadm init` leaves a half-made control plane that a second init refuses
 * (preflight: port 6443 in use, manifests present), so only transport faults before it ran
 * are retried; every other step is safe to try again.
 */
const RETRY_ON_FAILURE: ReadonlySet<StepKind> = new Set<StepKind>(['lb-config', 'prepare', 'kubeconfig', 'cni', 'upload-certs', 'token-refresh', 'join-control', 'join-worker', 'remove-node', 'upgrade-preflight', 'upgrade-snapshot', 'upgrade-config', 'upgrade-check', 'upgrade-addons']);
/** Steps that move their machine ready → joining → joined. */
const JOINS_MACHINE: ReadonlySet<StepKind> = new Set<StepKind>(['lb-config', 'prepare', 'init', 'join-control', 'join-worker']);
/**
 * Steps that fail no machine: the cluster-wide check is nobody's fault, and a failed removal is
 * answered to the power service, which fails the machine being reimaged itself.
 */
const FAILS_NO_MACHINE: ReadonlySet<StepKind> = new Set<StepKind>(['nodes-ready', 'remove-node', 'upgrade-preflight', 'upgrade-snapshot', 'upgrade-config', 'upgrade-node', 'upgrade-check', 'upgrade-addons']);
/** Steps whose output is itself secret (admin.conf): never streamed. */
const QUIET: ReadonlySet<StepKind> = new Set<StepKind>(['kubeconfig', 'nodes-ready']);

interface Outcome {
  readonly skipped: string | null;
  readonly data: Record<string, unknown>;
}

/** Collects output into redacted lines, sends them to the machine's events in batches, keeps a tail. */
class OutputSink {
  private partial = '';
  private batch: string[] = [];
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  readonly lines: string[] = [];

  constructor(
    readonly redact: Redactor,
    private readonly emit: (lines: string[]) => Promise<void>,
    private readonly tailSize: number,
  ) {}

  push(text: string): void {
    const parts = (this.partial + text).split(/\r?\n/);
    this.partial = parts.pop() ?? '';
    for (const p of parts) this.line(p);
    if (this.batch.length >= 40) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), 500);
  }

  /** Lines given whole (a final listing), redacted and kept like streamed ones. */
  add(lines: readonly string[]): void {
    for (const l of lines) this.line(l);
    this.flush();
  }

  private line(raw: string): void {
    const l = this.redact(raw.replace(/\s+$/, ''));
    this.lines.push(l);
    if (this.lines.length > 4 * this.tailSize) this.lines.splice(0, this.lines.length - this.tailSize);
    this.batch.push(l);
  }

  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.partial) {
      this.line(this.partial);
      this.partial = '';
    }
    const lines = this.batch.splice(0);
    if (lines.some((l) => l.trim() !== '')) this.chain = this.chain.then(() => this.emit(lines)).catch(() => undefined);
    return this.chain;
  }

  tail(): string[] {
    return tailLines(this.lines, this.tailSize);
  }
}

function backoff(settings: RunnerSettings, attempt: number): number {
  const base = Math.min(settings.retryDelayMs * 2 ** (attempt - 1), settings.retryMaxDelayMs);
  // ±20 % so that workers failing together do not retry in lockstep.
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export function isRetryable(err: unknown, kind: StepKind): boolean {
  if (err instanceof SshError) return err.transient;
  if (err instanceof StepError) return err.retryable && RETRY_ON_FAILURE.has(kind);
  return false;
}

export async function runStep(deps: RunnerDeps, job: StepJob, signal: AbortSignal): Promise<StepRecord> {
  const { step, cluster } = job;
  const { settings, now } = deps;
  // The orchestrator hands each cluster's runs a logger that already names the cluster.
  const log = deps.log.child({ step: step.id });
  const redact = createRedactor([job.secrets.bootstrapToken, job.secrets.certificateKey, job.secrets.caKeyPem]);
  const startedAt = now();
  const sameRun = job.previous && (job.previous.state === 'running' || job.previous.state === 'pending');
  let attempts = sameRun ? (job.previous?.attempts ?? 0) : 0;
  let lastError: string | null = null;

  const event = (mac: Mac, type: string, message: string, data: Record<string, unknown> = {}): Promise<void> =>
    deps.events
      .append({ mac, cluster: cluster.name, type, source: 'orchestrator', message, data: { step: step.id, kind: step.kind, ...data } })
      .then(() => undefined)
      .catch((err: unknown) => log.warn({ err }, 'cannot append an orchestration event'));
  // Each batch of output goes to the machine's events, and the step record's tail follows, so
  // the cluster view shows a long init's progress while it runs.
  const sink: OutputSink = new OutputSink(
    redact,
    async (lines) => {
      await event(step.mac, 'orchestration.output', lines.join('\n'), { lines: lines.length });
      await save('running').catch((err: unknown) => log.warn({ err }, 'cannot save the step output'));
    },
    settings.outputLines,
  );
  const save = (state: StepWrite['state'], extra: Partial<StepWrite> = {}): Promise<StepRecord> =>
    deps.orchestration.saveStep({
      cluster: cluster.name,
      id: step.id,
      kind: step.kind,
      mac: step.mac,
      state,
      attempts,
      startedAt: startedAt.toISOString(),
      endedAt: null,
      output: sink.tail(),
      error: lastError,
      data: { ...step.data },
      ...extra,
    });
  const move = async (mac: Mac, ev: MachineEventType, message: string, extra: { step?: string; reason?: string } = {}): Promise<void> => {
    try {
      await deps.machines.transition(mac, ev, { source: 'orchestrator', message, ...extra, data: { step: step.id } });
    } catch (err) {
      // Not allowed from its current state (an operator reimaged it meanwhile), or deleted.
      if (!(err instanceof TransitionError) && !(err instanceof AppError && err.kind === 'not-found')) throw err;
      log.debug({ err: err.message }, 'machine state left as is');
    }
  };

  await save('running');
  let target = await deps.machines.get(step.mac);
  if (target && JOINS_MACHINE.has(step.kind) && target.state === 'ready') {
    await move(step.mac, 'join-started', `joining cluster ${cluster.name}: ${step.kind}`);
    target = await deps.machines.get(step.mac);
  }
  await event(step.mac, 'orchestration', `${step.id} started on ${step.hostname}`);

  let outcome: Outcome | null = null;
  let failure: unknown = null;
  while (outcome === null && failure === null) {
    attempts += 1;
    try {
      if (step.kind === 'remove-node') outcome = await removeNode(deps, job, target, sink, signal);
      else {
        if (!target?.ip) throw new StepError('ERR_STEP_TARGET', `${step.hostname} has no IP address to reach it at`, false);
        outcome = await attempt(deps, job, target, attempts, sink, signal);
      }
    } catch (err) {
      if (signal.aborted) {
        await sink.flush();
        throw err;
      }
      lastError = errorMessage(err);
      if (isRetryable(err, step.kind) && attempts < settings.attempts) {
        const wait = backoff(settings, attempts);
        log.info({ attempt: attempts, err: lastError, retryInMs: wait }, 'step attempt failed; retrying');
        await sink.flush();
        await event(step.mac, 'orchestration', `${step.id} attempt ${attempts} failed: ${lastError}; trying again in ${(wait / 1000).toFixed(1)} s`, { attempt: attempts });
        await save('running');
        await deps.sleep(wait, signal);
      } else failure = err;
    }
  }
  await sink.flush();
  const endedAt = now().toISOString();
  const seconds = ((Date.parse(endedAt) - startedAt.getTime()) / 1000).toFixed(1);

  const metrics = instruments(deps.metrics ?? NO_METRICS, ORCHESTRATOR_METRICS);
  if (outcome) {
    lastError = null;
    // A skipped step did no work: its time would only pull the histogram down.
    if (!outcome.skipped) metrics.stepSeconds.observe({ step: step.kind, outcome: 'ok' }, Number(seconds));
    // Record first, then the machine: a crash in between is settled by the plan (`settle`).
    const rec = await save(outcome.skipped ? 'skipped' : 'done', { endedAt, data: { ...step.data, ...outcome.data } });
    await event(step.mac, 'orchestration', outcome.skipped ? `${step.id} skipped: ${outcome.skipped}` : `${step.id} done in ${seconds} s`);
    if (step.kind === 'init' || step.kind === 'join-control' || step.kind === 'join-worker' || step.kind === 'lb-config') {
      const m = await deps.machines.get(step.mac);
      if (m?.state === 'joining') await move(step.mac, 'joined', step.kind === 'lb-config' ? `load balancer of cluster ${cluster.name} configured` : `joined cluster ${cluster.name}`);
    }
    log.info({ seconds: Number(seconds), skipped: outcome.skipped }, 'step done');
    return rec;
  }

  metrics.stepSeconds.observe({ step: step.kind, outcome: 'failed' }, Number(seconds));
  metrics.stepFailures.inc({ step: step.kind });
  const reason = redact(errorMessage(failure));
  lastError = reason;
  log.warn({ err: reason, attempts }, 'step failed');
  const tail = sink.tail().slice(-5).join(' | ');
  await event(step.mac, 'orchestration', `${step.id} failed after ${attempts} attempt(s): ${reason}`);
  // Every other step fails its machine — before the record says so: a crash in between leaves a
  // failed machine and a `running` record (resumed after a retry), never a failed record beside
  // a machine still `joining`.
  if (!FAILS_NO_MACHINE.has(step.kind)) {
    await move(step.mac, 'fail', `failed at ${step.id}: ${reason}`, { step: step.id, reason: tail ? `${reason} — ${tail}` : reason });
  }
  return save('failed', { endedAt });
}

function connectTo(deps: Pick<RunnerDeps, 'shell' | 'privateKey' | 'settings'>, target: Machine, signal: AbortSignal, connectTimeoutMs = deps.settings.connectTimeoutMs): Promise<RemoteSession> {
  const { settings } = deps;
  return deps.shell.connect(
    { host: target.ip as string, port: settings.sshPort, username: settings.sshUser, privateKey: deps.privateKey, hostKeys: target.hostKeys, connectTimeoutMs },
    signal,
  );
}

type Run = (script: string, opts?: { timeoutMs?: number; stream?: boolean }) => Promise<string>;
type RunRaw = (script: string, opts?: { timeoutMs?: number; stream?: boolean }) => Promise<ExecResult>;

/** Runs scripts over one session: `raw` returns whatever happened, `run` throws on a timeout or a non-zero exit. */
function commands(deps: Pick<RunnerDeps, 'settings'>, session: RemoteSession, sink: OutputSink, signal: AbortSignal, quiet: boolean): { run: Run; raw: RunRaw } {
  const { settings } = deps;
  const raw: RunRaw = (script, opts = {}) => {
    const timeoutMs = opts.timeoutMs ?? settings.stepTimeoutMs;
    return session.exec(shellCommand(settings.sshUser, timeoutMs), {
      stdin: script,
      timeoutMs,
      signal,
      onData: opts.stream === false || quiet ? undefined : (text) => sink.push(text),
    });
  };
  const run: Run = async (script, opts = {}) => {
    const timeoutMs = opts.timeoutMs ?? settings.stepTimeoutMs;
    const r = await raw(script, opts);
    if (r.timedOut) throw new StepError('ERR_STEP_TIMEOUT', `timed out after ${Math.round(timeoutMs / 1000)} s`, true);
    if (r.code !== 0) throw new StepError('ERR_STEP_COMMAND', `exited ${r.code ?? r.signal ?? 'without a status'}${lastLine(r, sink, quiet)}`, true);
    return r.stdout;
  };
  return { run, raw };
}

/** `: <the last output line>`, redacted, for error messages. */
function lastLine(r: ExecResult, sink: OutputSink, quiet = false): string {
  const last = quiet ? '' : sink.redact(tailLines((r.stdout + '\n' + r.stderr).split('\n'), 1)[0] ?? '');
  return last ? `: ${last.trim().slice(0, 300)}` : '';
}

async function attempt(deps: RunnerDeps, job: StepJob, target: Machine, n: number, sink: OutputSink, signal: AbortSignal): Promise<Outcome> {
  // Rendered before any node is touched: a configuration that cannot be rendered (a template
  // missing from an install) fails the step as such, not as whatever the connection did.
  const kubeadmConfig = job.step.kind === 'prepare' ? prepareConfig(deps, job) : '';
  if (kubeadmConfig) deps.log.info({ step: job.step.id, apiVersion: /^apiVersion: (\S+)/m.exec(kubeadmConfig)?.[1], bytes: kubeadmConfig.length }, 'kubeadm configuration rendered');
  const session = await connectTo(deps, target, signal);
  try {
    return await perform(deps, job, session, n, sink, signal, kubeadmConfig);
  } finally {
    session.close();
  }
}

/** The kubeadm configuration `prepare` writes on the first control node. */
function prepareConfig(deps: RunnerDeps, job: StepJob): string {
  const { step, cluster, secrets } = job;
  const first = job.members.find((m) => m.mac === step.mac);
  const lb = job.members.find((m) => m.role === 'loadbalancer') ?? null;
  return renderKubeadmConfig(deps.kubeadmTemplates, {
    cluster,
    endpoint: job.endpoint,
    node: { name: step.hostname, ip: first?.ip ?? '' },
    loadBalancer: lb,
    bootstrapToken: secrets.bootstrapToken,
    certificateKey: secrets.certificateKey,
    podSubnet: cluster.podSubnet ?? DEFAULT_POD_SUBNET[cluster.cni],
    serviceSubnet: cluster.serviceSubnet ?? DEFAULT_SERVICE_SUBNET,
    imageRepository: deps.settings.imageRepository,
  });
}

async function perform(deps: RunnerDeps, job: StepJob, session: RemoteSession, n: number, sink: OutputSink, signal: AbortSignal, kubeadmConfig: string): Promise<Outcome> {
  const { settings } = deps;
  const { step, cluster, secrets } = job;
  const sh = commands(deps, session, sink, signal, QUIET.has(step.kind));
  const { run } = sh;
  const probe = async (script: string): Promise<boolean> => {
    const r = await session.exec(shellCommand(settings.sshUser, 30_000), { stdin: script, timeoutMs: 30_000, signal });
    if (r.timedOut) throw new StepError('ERR_STEP_TIMEOUT', 'the idempotency probe timed out', true);
    if (r.code === PROBE_BUSY) throw new StepError('ERR_STEP_COMMAND', 'an earlier kubeadm still runs on the node (started before a takeover or a restart); trying again once it ends', true);
    if (r.code !== 0 && r.code !== 1) throw new StepError('ERR_STEP_COMMAND', `the idempotency probe exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(-200)}`, true);
    return r.code === 0;
  };
  const at = deps.now().toISOString();

  switch (step.kind) {
    case 'lb-config': {
      const config = renderHaproxyConfig(deps.haproxyTemplates, step.data['backends'] as Backend[]);
      const vrrp = step.data['vrrp'] as Vrrp | undefined;
      const keepalived = vrrp ? { config: renderKeepalivedConfig(deps.haproxyTemplates, vrrp, { cluster: cluster.name, hostname: step.hostname }), checkScript: CHECK_SCRIPT, address: vrrp.self } : undefined;
      await run(haproxyScript(config, keepalived));
      return { skipped: null, data: {} };
    }
    case 'prepare': {
      await run(prepareScript(secrets.caCertPem, secrets.caKeyPem, kubeadmConfig));
      return { skipped: null, data: { endpoint: job.endpoint } };
    }
    case 'init': {
      if (await probe(probes.init)) return { skipped: `${PATHS.adminConf} already exists: the control plane was initialised before`, data: {} };
      const out = await run(initScript());
      const printed = parseJoinCommands(out);
      const wrong = printed.find((j) => j.caCertHash !== secrets.discoveryHash);
      if (wrong) {
        throw new StepError('ERR_STEP_CHECK', `kubeadm init used another CA (it printed ${wrong.caCertHash}, racksmith's CA is ${secrets.discoveryHash}): the CA in ${PATHS.pki} was not used`, false);
      }
      return { skipped: null, data: { certsUploadedAt: at, tokenCreatedAt: at, joinCommandsSeen: printed.length } };
    }
    case 'kubeconfig': {
      const text = await run(readAdminConfScript(), { stream: false });
      if (!/^kind:\s*Config\s*$/m.test(text) || !/^clusters:/m.test(text)) throw new StepError('ERR_STEP_CHECK', `${PATHS.adminConf} is not a kubeconfig`, true);
      await deps.secrets.put(clusterScope(cluster.name), ADMIN_CONF_SECRET, text);
      const server = /server:\s*(\S+)/.exec(text)?.[1] ?? null;
      sink.add([`admin kubeconfig stored (server ${server ?? 'unknown'})`]);
      return { skipped: null, data: { server } };
    }
    case 'cni': {
      // The CNI release pinned for the cluster's Kubernetes version goes into the manifest URL.
      const compat = checkCompatibility({ os: cluster.os, kubernetesVersion: cluster.kubernetesVersion, containerRuntime: cluster.containerRuntime, cni: cluster.cni });
      if (!compat.ok) throw new StepError('ERR_STEP_CHECK', `no pinned ${cluster.cni} release: ${compat.message}`, false);
      const url = cniManifestUrl(settings.cniManifests[cluster.cni], compat.pins.cni);
      await run(applyCniScript(url));
      return { skipped: null, data: { cni: cluster.cni, manifest: url } };
    }
    case 'upload-certs':
      await run(uploadCertsScript(secrets.certificateKey));
      return { skipped: null, data: { certsUploadedAt: at } };
    case 'token-refresh':
      await run(tokenRefreshScript(secrets.bootstrapToken));
      return { skipped: null, data: { tokenCreatedAt: at } };
    case 'join-control':
    case 'join-worker': {
      if (await probe(probes.join)) return { skipped: `${PATHS.kubeletConf} already exists: the node joined before`, data: {} };
      const version = await nodeVersion(session, deps, signal);
      const required = step.data['requiredVersion'] as string | undefined;
      const mismatch = required && version ? versionMismatch(version, required) : null;
      if (mismatch) throw new StepError('ERR_STEP_CHECK', `${step.hostname} has kubeadm ${version} but the control plane is at ${required}: ${mismatch}; reimage it to install ${required}`, false);
      const target = job.members.find((m) => m.mac === step.mac);
      const control = step.kind === 'join-control';
      await run(
        joinScript(
          {
            endpoint: job.endpoint,
            token: secrets.bootstrapToken,
            caCertHash: secrets.discoveryHash,
            nodeName: step.hostname,
            criSocket: criSocket(cluster),
            controlPlane: control ? { certificateKey: secrets.certificateKey, advertiseAddress: target?.ip ?? '' } : undefined,
          },
          // A retry cleans what the failed attempt may have left (preflight refuses leftovers).
          { resetFirst: n > 1 },
        ),
      );
      return { skipped: null, data: { endpoint: job.endpoint, version } };
    }
    case 'nodes-ready':
      return waitForNodes(deps, step, run, sink, signal);
    case 'upgrade-preflight': {
      const view = await readEtcd(sh, step.hostname);
      if (!etcdAllHealthy(view)) throw new StepError('ERR_STEP_CHECK', `etcd is not healthy: ${view.members.filter((m) => !memberHealthy(m, view.health)).map((m) => m.name || m.id).join(', ')}`, true);
      const nodes = parseNodes(await run(getNodesScript(), { timeoutMs: 60_000, stream: false }));
      const notReady = nodes.filter((n) => !n.ready).map((n) => n.name);
      if (notReady.length) throw new StepError('ERR_STEP_CHECK', `nodes not Ready: ${notReady.join(', ')}`, true);
      sink.add([`etcd: ${view.members.length} member(s), all healthy; ${nodes.length} node(s), all Ready`]);
      return { skipped: null, data: { members: view.members.length, nodes: nodes.length } };
    }
    case 'upgrade-snapshot':
      return { skipped: deps.settings.snapshots ? null : 'no snapshot folder configured', data: await takeSnapshot(deps, job, sh, step.hostname, sink) };
    case 'upgrade-config': {
      const to = String(step.data['to']);
      const current = await run(clusterConfigReadScript(), { timeoutMs: 60_000, stream: false });
      await run(clusterConfigPatchScript(withKubernetesVersion(current, to)), { timeoutMs: 60_000 });
      sink.add([`ClusterConfiguration.kubernetesVersion is now v${to}: nodes joined from now on deploy ${to}`]);
      return { skipped: null, data: { to } };
    }
    case 'upgrade-check':
      return waitForUpgradedNode(deps, step, sh, sink, signal);
    case 'upgrade-addons':
      await run(kubeProxyImageScript(settings.imageRepository, String(step.data['to'])), { timeoutMs: 60_000 });
      return { skipped: null, data: { to: step.data['to'] } };
    case 'upgrade-node':
      throw new StepError('ERR_STEP_TARGET', 'a node is upgraded by its reimage, not by a step', false);
    case 'remove-node':
      throw new StepError('ERR_STEP_TARGET', 'a removal runs through removeNode', false);
  }
}

/**
 * Takes a node out of its cluster before its machine is wiped (reimage), from a healthy control
 * node (`data.via`, never the node itself): drain it, `kubeadm reset -f` on the node while its
 * old system still answers (best effort), remove its etcd member (control plane), delete the
 * Node. Every part is idempotent — a node or member already gone is success — so a retry or a
 * restart runs the whole sequence again. With no `via` the cluster was never initialised: only
 * the reset is tried. The load balancer is the plan's business (an `lb-config` without it).
 */
async function removeNode(deps: RunnerDeps, job: StepJob, subject: Machine | null, sink: OutputSink, signal: AbortSignal): Promise<Outcome> {
  const { step, cluster } = job;
  const d = step.data as unknown as RemovalData;
  const facts: Record<string, unknown> = {};
  let session: RemoteSession | null = null;
  if (d.purpose === 'delete' && !d.force) {
    // The node is taken out for good: it must answer, so its own reset leaves nothing running.
    const reach = await reachable(deps, subject, signal);
    if (reach !== null) throw new StepError('ERR_STEP_TARGET', `${d.node} does not answer over SSH (${reach}): delete it with force to remove it from the cluster side anyway`, false);
  }
  if (d.via) {
    if (d.via === step.mac) throw new StepError('ERR_STEP_TARGET', `refusing to remove ${d.node} from itself`, false);
    const via = await deps.machines.get(d.via);
    if (!via?.ip) throw new StepError('ERR_STEP_TARGET', `control-plane node ${d.viaNode ?? d.via} has no IP address to reach it at`, false);
    session = await connectTo(deps, via, signal);
  }
  try {
    const sh = session ? commands(deps, session, sink, signal, false) : null;
    if (sh && d.role === 'control-plane') {
      const view = await readEtcd(sh, d.viaNode as string);
      if (d.purpose === 'delete') {
        const verdict = liveQuorumAfterRemoval(view, d.node, subject?.ip ?? null);
        if (!verdict.ok) throw new StepError('ERR_STEP_CHECK', `removing ${d.node} would break etcd quorum: ${verdict.reason ?? ''}`, false);
      }
      Object.assign(facts, await takeSnapshot(deps, job, sh, d.viaNode as string, sink));
    }
    if (sh) {
      const short = Math.min(deps.settings.stepTimeoutMs, 60_000);
      const st = await sh.raw(nodeStatusScript(d.node), { timeoutMs: short });
      if (st.timedOut) throw new StepError('ERR_STEP_TIMEOUT', `kubectl get node ${d.node} timed out`, true);
      const row = st.code === 0 ? parseNodes(st.stdout).find((n) => n.name === d.node) : undefined;
      if (st.code !== 0 && !/NotFound|not found/.test(st.stdout + st.stderr)) throw new StepError('ERR_STEP_COMMAND', `kubectl get node ${d.node} exited ${st.code ?? st.signal}${lastLine(st, sink)}`, true);
      facts['nodeFound'] = row !== undefined;
      if (row) {
        // kubectl gives up first, so its own message says why, inside the command's time.
        const step = deps.settings.stepTimeoutMs;
        const drainMs = Math.max(1000, Math.min(deps.settings.drainTimeoutMs, step - Math.min(30_000, step / 4)));
        const dr = await sh.raw(drainScript(d.node, { kubernetesMinor: kubernetesMinor(cluster.kubernetesVersion), timeoutSeconds: drainMs / 1000 }), { timeoutMs: step });
        if (dr.code === 0 && !dr.timedOut) facts['drained'] = true;
        else if (!row.ready || d.force) {
          // A node that is down cannot let its pods go gracefully; they are rescheduled once it is deleted.
          facts['drained'] = false;
          sink.add([`drain of ${d.node} did not finish${lastLine(dr, sink)}; the node is ${row.status}${d.force ? ' and the removal is forced' : ''}, so it is deleted anyway`]);
        } else throw new StepError(dr.timedOut ? 'ERR_STEP_TIMEOUT' : 'ERR_STEP_COMMAND', `kubectl drain ${d.node} failed${lastLine(dr, sink)}`, true);
      } else sink.add([`node ${d.node} is not in the cluster (already deleted)`]);
    }
    facts['reset'] = await resetBestEffort(deps, job, subject, sink, signal);
    if (sh) {
      // Listed again: the node's own reset has usually left etcd by now.
      if (d.role === 'control-plane') facts['etcdMember'] = await removeEtcdMember(sh, d, subject, sink);
      await sh.run(deleteNodeScript(d.node), { timeoutMs: Math.min(deps.settings.stepTimeoutMs, 120_000) });
      facts['deleted'] = true;
    } else {
      sink.add([`cluster ${cluster.name} was never initialised: there is no node or etcd member to remove`]);
    }
  } finally {
    session?.close();
  }
  return { skipped: null, data: facts };
}

async function removeEtcdMember(sh: { run: Run; raw: RunRaw }, d: RemovalData, subject: Machine | null, sink: OutputSink): Promise<string | null> {
  const via = d.viaNode as string;
  const members = parseEtcdMembers(await sh.run(etcdctlScript(via, ['member', 'list']), { timeoutMs: 60_000 }));
  if (members.length === 0) throw new StepError('ERR_STEP_CHECK', `etcdctl member list on ${via} printed no member`, true);
  const member = findEtcdMember(members, d.node, subject?.ip ?? null);
  if (!member) {
    sink.add([`etcd has no member for ${d.node} (already removed)`]);
    return null;
  }
  if (member.name === via) throw new StepError('ERR_STEP_CHECK', `the etcd member found for ${d.node} is ${via}'s own; nothing removed`, false);
  if (members.length === 1) throw new StepError('ERR_STEP_CHECK', `${d.node} is the last etcd member; nothing removed`, false);
  const r = await sh.raw(etcdctlScript(via, ['member', 'remove', member.id]), { timeoutMs: 60_000 });
  // Removed meanwhile (kubeadm reset on the node leaves etcd by itself): the same outcome.
  if ((r.code !== 0 || r.timedOut) && !/member not found/i.test(r.stdout + r.stderr)) throw new StepError('ERR_STEP_COMMAND', `etcdctl member remove ${member.id} failed${lastLine(r, sink)}`, true);
  return member.id;
}

/** etcd's member list and health read through control node `via` (outside any step: a guard before a reimage or a delete). */
export async function inspectEtcd(deps: Pick<RunnerDeps, 'shell' | 'privateKey' | 'settings'>, via: Machine, signal: AbortSignal): Promise<EtcdView> {
  const session = await connectTo(deps, via, signal, Math.min(deps.settings.connectTimeoutMs, 10_000));
  try {
    const sink = new OutputSink(createRedactor([]), async () => undefined, deps.settings.outputLines);
    return await readEtcd(commands(deps, session, sink, signal, true), via.hostname ?? via.mac);
  } finally {
    session.close();
  }
}

/** Null when the node answers over SSH with its pinned key; else why not. */
async function reachable(deps: RunnerDeps, subject: Machine | null, signal: AbortSignal): Promise<string | null> {
  if (!subject?.ip) return 'no IP address';
  if (subject.hostKeys.length === 0) return 'no phoned-home host key';
  try {
    const session = await connectTo(deps, subject, signal, Math.min(deps.settings.connectTimeoutMs, 10_000));
    session.close();
    return null;
  } catch (err) {
    if (signal.aborted) throw err;
    return errorMessage(err);
  }
}

/** The member list and every member's health, through the etcd pod of `via`. */
export async function readEtcd(sh: { run: Run; raw: RunRaw }, via: string): Promise<EtcdView> {
  const members = parseEtcdMembers(await sh.run(etcdctlScript(via, ['member', 'list']), { timeoutMs: 60_000, stream: false }));
  if (members.length === 0) throw new StepError('ERR_STEP_CHECK', `etcdctl member list on ${via} printed no member`, true);
  // `endpoint health` exits 1 when a member is unhealthy: its lines are the answer either way.
  const h = await sh.raw(endpointHealthScript(via), { timeoutMs: 60_000, stream: false });
  if (h.timedOut) throw new StepError('ERR_STEP_TIMEOUT', `etcdctl endpoint health on ${via} timed out`, true);
  return { members, health: parseEndpointHealth(h.stdout + '\n' + h.stderr) };
}

/** An etcd snapshot kept in racksmith's data directory before a control-plane node goes. */
async function takeSnapshot(deps: RunnerDeps, job: StepJob, sh: { run: Run; raw: RunRaw }, via: string, sink: OutputSink): Promise<Record<string, unknown>> {
  const where = deps.settings.snapshots;
  if (!where) return {};
  await sh.run(snapshotSaveScript(via), { timeoutMs: Math.min(deps.settings.stepTimeoutMs, 300_000) });
  const text = await sh.run(snapshotReadScript(), { timeoutMs: Math.min(deps.settings.stepTimeoutMs, 300_000), stream: false });
  const bytes = Buffer.from(text.trim(), 'base64');
  if (bytes.length === 0) throw new StepError('ERR_STEP_CHECK', `the etcd snapshot read from ${via} is empty`, true);
  const kept = keepSnapshot(where.dir, job.cluster.name, deps.now(), bytes, where.keep);
  sink.add([`etcd snapshot kept: ${kept.path} (${bytes.length} bytes)${kept.pruned.length ? `; removed the oldest: ${kept.pruned.join(', ')}` : ''}`]);
  return { snapshot: kept.path, snapshotBytes: bytes.length };
}

/** `kubeadm reset -f` on the node being removed, if it still answers with its pinned key; never fails the step. */
async function resetBestEffort(deps: RunnerDeps, job: StepJob, subject: Machine | null, sink: OutputSink, signal: AbortSignal): Promise<string> {
  const name = (job.step.data['node'] as string | undefined) ?? job.step.hostname;
  let outcome: string;
  if (!subject?.ip) outcome = 'skipped: no IP address';
  else if (subject.hostKeys.length === 0) outcome = 'skipped: no phoned-home host key';
  else {
    const timeoutMs = Math.min(deps.settings.stepTimeoutMs, 120_000);
    try {
      const session = await connectTo(deps, subject, signal, Math.min(deps.settings.connectTimeoutMs, 10_000));
      try {
        const r = await commands(deps, session, sink, signal, false).raw(resetScript(criSocket(job.cluster)), { timeoutMs });
        outcome = r.code === 0 && !r.timedOut ? 'done' : `failed: ${r.timedOut ? 'timed out' : `exited ${r.code ?? r.signal}`}${lastLine(r, sink)}`;
      } finally {
        session.close();
      }
    } catch (err) {
      if (signal.aborted) throw err;
      outcome = `skipped: ${errorMessage(err)}`;
    }
  }
  if (outcome !== 'done') sink.add([`kubeadm reset on ${name} ${outcome} (best effort: its disk is wiped next)`]);
  return outcome;
}

/** `v1.30.6` from the node's kubeadm, or null when it does not say (the check is then skipped). */
async function nodeVersion(session: RemoteSession, deps: RunnerDeps, signal: AbortSignal): Promise<string | null> {
  const r = await session.exec(shellCommand(deps.settings.sshUser, 30_000), { stdin: kubeadmVersionProbe(), timeoutMs: 30_000, signal });
  const m = /v?(\d+\.\d+\.\d+)/.exec(r.stdout);
  return r.code === 0 && m ? (m[1] as string) : null;
}

/** Why a node's version does not fit the control plane's (another minor), or null. */
function versionMismatch(node: string, required: string): string | null {
  const a = parseVersion(node);
  const b = parseVersion(required);
  if (!a || !b || (a.major === b.major && a.minor === b.minor)) return null;
  return a.minor < b.minor ? 'a node of the old version never joins after the control plane moved on' : 'a node newer than the control plane is not a supported skew';
}

/** After an upgraded node rejoined: etcd healthy (every member) and the node Ready at the new version. */
async function waitForUpgradedNode(deps: RunnerDeps, step: PlannedStep, sh: { run: Run; raw: RunRaw }, sink: OutputSink, signal: AbortSignal): Promise<Outcome> {
  const node = String(step.data['node']);
  const to = String(step.data['to']).replace(/^v/, '');
  const deadline = Date.now() + deps.settings.nodesReadyTimeoutMs;
  let why = '';
  for (;;) {
    try {
      const view = await readEtcd(sh, step.hostname);
      const rows = parseNodes(await sh.run(getNodesScript(), { timeoutMs: 60_000, stream: false }));
      const row = rows.find((n) => n.name === node);
      if (!etcdAllHealthy(view)) why = `etcd not healthy yet (${view.members.filter((m) => !memberHealthy(m, view.health)).map((m) => m.name || m.id).join(', ')})`;
      else if (!row) why = `${node} is not in kubectl get nodes`;
      else if (!row.ready) why = `${node} is ${row.status}`;
      else if (row.version !== null && row.version.replace(/^v/, '') !== to) why = `${node} runs ${row.version}, not v${to}`;
      else {
        sink.add([`${node} Ready at v${to}; etcd: ${view.members.length} member(s), all healthy`]);
        return { skipped: null, data: { node, version: to, members: view.members.length } };
      }
    } catch (err) {
      if (!(err instanceof StepError)) throw err;
      why = err.message;
    }
    if (Date.now() >= deadline) throw new StepError('ERR_STEP_TIMEOUT', `after ${Math.round(deps.settings.nodesReadyTimeoutMs / 1000)} s: ${why}`, false);
    await deps.sleep(deps.settings.nodesReadyPollMs, signal);
  }
}

async function waitForNodes(deps: RunnerDeps, step: PlannedStep, run: (script: string, opts?: { timeoutMs?: number; stream?: boolean }) => Promise<string>, sink: OutputSink, signal: AbortSignal): Promise<Outcome> {
  const expected = (step.data['nodes'] as string[] | undefined) ?? [];
  const deadline = Date.now() + deps.settings.nodesReadyTimeoutMs;
  let listing = '';
  let missing: string[] = expected;
  for (;;) {
    try {
      listing = await run(getNodesScript(), { timeoutMs: Math.min(deps.settings.stepTimeoutMs, 60_000), stream: false });
      const seen = parseNodes(listing);
      missing = expected.filter((n) => !seen.some((s) => s.name === n && s.ready));
      if (missing.length === 0) {
        sink.add(listing.split('\n'));
        return { skipped: null, data: { nodes: expected } };
      }
    } catch (err) {
      // The API may blip while control-plane nodes join; only the deadline ends the wait.
      if (!(err instanceof StepError)) throw err;
    }
    if (Date.now() >= deadline) {
      if (listing) sink.add(listing.split('\n'));
      throw new StepError('ERR_STEP_TIMEOUT', `not Ready after ${Math.round(deps.settings.nodesReadyTimeoutMs / 1000)} s: ${missing.join(', ')}`, false);
    }
    await deps.sleep(deps.settings.nodesReadyPollMs, signal);
  }
}
