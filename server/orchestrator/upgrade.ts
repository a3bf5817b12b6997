import { parseDocument } from 'yaml';
import type { Cluster, ClusterUpgrade, PlanMachine } from '../inventory/model.js';
import type { StepRecord } from '../inventory/store.js';
import type { Mac } from '../lib/mac.js';
import { shellQuote } from '../render/templates.js';
import { PATHS, script, writeFile } from './commands.js';

/**
 * The rolling upgrade by reimage (docs/orchestrator.md, "Upgrade"), the way Cluster API's
 * KubeadmControlPlane rolls a control plane with no spare machine: check, snapshot etcd, move
 * the cluster's ClusterConfiguration to the new version, then reimage control-plane nodes one at
 * a time into the new packages (each rejoins; the next waits until etcd is healthy and the node
 * Ready at the new version), then workers `maxUnavailable` at a time, then kube-proxy's image;
 * the cluster's version changes when the last node is done.
 *
 *   preflight ─► snapshot ─► config (kubeadm-config: kubernetesVersion)
 *   ─► for each control node, by name: reimage ─► rejoin at the new version ─► check (etcd healthy, Ready, version)
 *   ─► workers, maxUnavailable at a time: reimage ─► rejoin ─► check
 *   ─► addons (kube-proxy image) ─► cluster version = new
 *
 * The plan below is pure: records and machines in, steps to run and nodes to reimage out.
 */
export const UPGRADE_STEP_KINDS = ['upgrade-preflight', 'upgrade-snapshot', 'upgrade-config', 'upgrade-node', 'upgrade-check', 'upgrade-addons'] as const;
export type UpgradeStepKind = (typeof UPGRADE_STEP_KINDS)[number];

/** Versions as `1.30.6` (a leading `v` dropped). */
export function parseVersion(v: string): { major: number; minor: number; patch: number } | null {
  const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(v.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) } : null;
}

/**
 * kubeadm's version-skew rules for an upgrade (kubeadm-upgrade.md: "skipping MINOR versions when
 * upgrading is unsupported"): the same minor with a newer patch, or the next minor. Null when
 * allowed, else why not.
 */
export function skewProblem(from: string, to: string): string | null {
  const a = parseVersion(from);
  const b = parseVersion(to);
  if (!a || !b) return `cannot read the versions ${from} → ${to}`;
  if (a.major !== b.major) return `a major version change (${from} → ${to}) is not an upgrade kubeadm supports`;
  if (b.minor < a.minor || (b.minor === a.minor && b.patch <= a.patch)) return `${to} is not newer than the cluster's ${from}: downgrades are not supported`;
  if (b.minor > a.minor + 1) return `one minor version at a time: from ${from} the next upgrade is to 1.${a.minor + 1}.x, not ${to}`;
  return null;
}

/** The running, paused or aborted upgrade whose last node may still be on its way; null when none. */
export function activeUpgrade(cluster: Pick<Cluster, 'upgrade'>): ClusterUpgrade | null {
  const u = cluster.upgrade ?? null;
  return u && (u.state === 'running' || u.state === 'paused' || u.state === 'aborted') ? u : null;
}

export const nodeRecordId = (mac: Mac, upgrade: string): string => `upgrade-node:${mac}:${upgrade}`;
export const checkStepId = (mac: Mac, upgrade: string): string => `upgrade-check:${mac}:${upgrade}`;
export const phaseStepId = (kind: 'upgrade-preflight' | 'upgrade-snapshot' | 'upgrade-config' | 'upgrade-addons', upgrade: string): string => `${kind}:${upgrade}`;

export interface UpgradeStep {
  readonly id: string;
  readonly kind: UpgradeStepKind;
  /** The machine it runs on (the control node; for `upgrade-check`, the node checked). */
  readonly mac: Mac;
  readonly data: Record<string, unknown>;
}

export interface UpgradeFacts {
  readonly cluster: Cluster;
  readonly upgrade: ClusterUpgrade;
  readonly controls: readonly PlanMachine[];
  readonly workers: readonly PlanMachine[];
  /** The healthy control node cluster-wide commands run on. */
  readonly control: PlanMachine | null;
  readonly record: (id: string) => StepRecord | undefined;
  readonly isActive: (id: string) => boolean;
  /** The machine's current generation (a finished removal ends one). */
  readonly generation: (m: PlanMachine) => number;
  /** The join record of the machine's current life, if it joined in it. */
  readonly currentJoin: (m: PlanMachine) => StepRecord | undefined;
  /** The init node in the life in which it ran init (it never joined: it is at the cluster's first version). */
  readonly isInitLife: (m: PlanMachine) => boolean;
}

export type NodeProgress = 'done' | 'checking' | 'in-flight' | 'failed' | 'todo';

export interface UpgradePlan {
  readonly run: readonly UpgradeStep[];
  /** Nodes to reimage now (the service records an `upgrade-node` record first, then asks power). */
  readonly reimage: readonly Mac[];
  readonly waiting: readonly string[];
  /** The ClusterConfiguration was moved to the new version: installs now get the new packages. */
  readonly controlPlaneMoved: boolean;
  /** Every node is done and the addons too: the cluster's version may change. */
  readonly finished: boolean;
  readonly progress: Readonly<Record<string, NodeProgress>>;
  /** Nodes checked at the new version whose `upgrade-node` record still reads running: the service closes them. */
  readonly doneNodes: readonly Mac[];
}

const finished = (r: StepRecord | undefined): boolean => r !== undefined && (r.state === 'done' || r.state === 'skipped');
const nameOf = (m: PlanMachine): string => m.hostname ?? m.mac;
const sameVersion = (a: string | null | undefined, b: string): boolean => {
  const x = a ? parseVersion(a) : null;
  const y = parseVersion(b);
  return x !== null && y !== null && x.major === y.major && x.minor === y.minor && x.patch === y.patch;
};

export function planUpgrade(f: UpgradeFacts): UpgradePlan {
  const { upgrade: u, record, isActive } = f;
  const run: UpgradeStep[] = [];
  const reimage: Mac[] = [];
  const waiting: string[] = [];
  const progress: Record<string, NodeProgress> = {};
  const going = u.state === 'running';
  const phase = (kind: 'upgrade-preflight' | 'upgrade-snapshot' | 'upgrade-config' | 'upgrade-addons'): StepRecord | undefined => record(phaseStepId(kind, u.id));
  const moved = finished(phase('upgrade-config')) || u.controlPlaneMoved === true;
  const doneNodes: Mac[] = [];
  const result = (fin = false): UpgradePlan => ({ run, reimage, waiting, controlPlaneMoved: moved, finished: fin, progress, doneNodes });
  const control = f.control;
  const planPhase = (kind: 'upgrade-preflight' | 'upgrade-snapshot' | 'upgrade-config' | 'upgrade-addons', data: Record<string, unknown> = {}): void => {
    const id = phaseStepId(kind, u.id);
    if (!isActive(id) && control) run.push({ id, kind, mac: control.mac, data: { upgrade: u.id, to: u.to, ...data } });
  };

  // ── checks, snapshot and the cluster's configuration, once ─────────────
  if (!moved) {
    for (const kind of ['upgrade-preflight', 'upgrade-snapshot', 'upgrade-config'] as const) {
      const r = phase(kind);
      if (finished(r)) continue;
      if (r?.state === 'failed') {
        waiting.push(`upgrade stopped: ${r.id} failed (${r.error ?? 'no reason given'}); fix the cause and resume`);
        return result();
      }
      if (isActive(phaseStepId(kind, u.id))) return result();
      if (!going) {
        waiting.push(`upgrade ${u.state}: ${kind} not started`);
        return result();
      }
      if (!control) waiting.push('the upgrade waits for a healthy control-plane node');
      else planPhase(kind);
      return result();
    }
  }

  // ── nodes: control plane first, one at a time; then workers ────────────
  const statusOf = (m: PlanMachine): NodeProgress => {
    const check = record(checkStepId(m.mac, u.id));
    if (finished(check)) return 'done';
    const rec = record(nodeRecordId(m.mac, u.id));
    if (rec?.state === 'failed' || check?.state === 'failed' || m.state === 'failed') return 'failed';
    const join = f.currentJoin(m);
    const atTarget = !f.isInitLife(m) && finished(join) && sameVersion(join?.data['version'] as string | undefined, u.to);
    if (atTarget && m.state === 'joined') return 'checking';
    if (rec && (rec.state === 'running' || rec.state === 'done')) {
      // Asked, but the ask may have been cut short (a crash before power took it): ask again.
      const unasked = !rec.data['reimage'] && m.state === 'joined' && f.generation(m) === rec.data['generation'];
      return unasked ? 'todo' : 'in-flight';
    }
    return atTarget ? 'checking' : 'todo';
  };
  const checkNode = (m: PlanMachine): void => {
    const id = checkStepId(m.mac, u.id);
    if (!isActive(id) && control) run.push({ id, kind: 'upgrade-check', mac: control.mac, data: { upgrade: u.id, to: u.to, node: nameOf(m), nodeMac: m.mac } });
  };
  const groups: { readonly nodes: readonly PlanMachine[]; readonly width: number; readonly what: string }[] = [
    { nodes: f.controls, width: 1, what: 'control-plane node' },
    { nodes: f.workers, width: Math.max(1, u.maxUnavailable), what: 'worker' },
  ];
  for (const g of groups) {
    const st = g.nodes.map((m) => ({ m, s: statusOf(m) }));
    for (const x of st) progress[nameOf(x.m)] = x.s;
    for (const x of st) if (x.s === 'done' && record(nodeRecordId(x.m.mac, u.id))?.state === 'running') doneNodes.push(x.m.mac);
    for (const x of st) if (x.s === 'checking') checkNode(x.m);
    const failed = st.filter((x) => x.s === 'failed');
    if (failed.length) {
      waiting.push(`upgrade stopped: ${failed.map((x) => nameOf(x.m)).join(', ')} failed; repair (retry or reimage) and resume`);
      return result();
    }
    const busy = st.filter((x) => x.s === 'in-flight' || x.s === 'checking').length;
    const todo = st.filter((x) => x.s === 'todo');
    if (todo.length === 0 && busy === 0) continue;
    if (!going) {
      if (todo.length) waiting.push(`upgrade ${u.state}: ${todo.length} ${g.what}(s) not upgraded${busy ? `, ${busy} still on their way` : ''}`);
      return result();
    }
    if (!control) {
      waiting.push('the upgrade waits for a healthy control-plane node');
      return result();
    }
    for (const x of todo.slice(0, Math.max(0, g.width - busy))) reimage.push(x.m.mac);
    if (busy || todo.length) waiting.push(`upgrading ${g.what}s to ${u.to}: ${busy} on their way, ${todo.length} to go`);
    return result();
  }

  // ── kube-proxy follows the control plane; then the cluster's version moves ──
  const addons = phase('upgrade-addons');
  if (finished(addons)) return result(true);
  if (addons?.state === 'failed') waiting.push(`upgrade stopped: ${addons.id} failed (${addons.error ?? 'no reason given'}); fix the cause and resume`);
  else if (going && !isActive(phaseStepId('upgrade-addons', u.id))) planPhase('upgrade-addons');
  return result();
}

/** The Kubernetes version a machine installed now gets: the new one once the control plane moved to it. */
export function installVersion(cluster: Pick<Cluster, 'kubernetesVersion' | 'upgrade'>): string {
  const u = cluster.upgrade;
  return u && u.controlPlaneMoved && u.state !== 'done' && u.state !== 'failed' ? u.to : cluster.kubernetesVersion;
}

// ── scripts ───────────────────────────────────────────────────────────────

// Functions, not constants: plan.ts imports this module, and commands.ts is part of an import cycle through it.
const kubectl = (): string => `kubectl --kubeconfig ${PATHS.adminConf}`;

export function clusterConfigReadScript(): string {
  return script([`${kubectl()} -n kube-system get configmap kubeadm-config -o ${shellQuote('jsonpath={.data.ClusterConfiguration}')}`]);
}

/** The ClusterConfiguration with `kubernetesVersion` set, every other field as it was. */
export function withKubernetesVersion(clusterConfiguration: string, version: string): string {
  const doc = parseDocument(clusterConfiguration);
  if (doc.errors.length > 0 || doc.get('kind') !== 'ClusterConfiguration') throw new Error('the kubeadm-config ConfigMap holds no ClusterConfiguration');
  doc.set('kubernetesVersion', `v${version.replace(/^v/, '')}`);
  return doc.toString();
}

/** A merge patch of the kubeadm-config ConfigMap, from a file (the configuration is multi-line YAML). */
export function clusterConfigPatchScript(clusterConfiguration: string): string {
  const file = `${PATHS.configDir}/kubeadm-config-patch.json`;
  return script([`mkdir -p ${PATHS.configDir}`, ...writeFile(file, JSON.stringify({ data: { ClusterConfiguration: clusterConfiguration } }), '0600'), `${kubectl()} -n kube-system patch configmap kubeadm-config --type merge --patch-file ${file}`, `rm -f ${file}`]);
}

/** kube-proxy runs the control plane's version (what `kubeadm upgrade apply` does to the addon). */
export function kubeProxyImageScript(imageRepository: string, version: string): string {
  return script([`${kubectl()} -n kube-system set image daemonset/kube-proxy ${shellQuote(`kube-proxy=${imageRepository}/kube-proxy:v${version.replace(/^v/, '')}`)}`]);
}

/** The node's kubeadm version (`v1.30.6`); a join records it and refuses a node of the wrong version. */
export const kubeadmVersionProbe = (): string => script(['kubeadm version -o short'], { errexit: false });
