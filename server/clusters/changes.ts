import type { Cluster, Machine } from '../inventory/model.js';
import type { MachineState } from '../inventory/lifecycle.js';
import { checkCompatibility, osOfRelease, type SpecField } from './compatibility.js';

/**
 * Whether a PATCH may change what a cluster is built of. The Kubernetes version, the container
 * runtime and the CNI are what its machines were installed with and what kubeadm was run with:
 * once a node has joined they change only through an upgrade (one minor at a time, node by node),
 * and a machine that already ran its role setup has the old packages on disk. Pure.
 */
export type ClusterChangeField = 'kubernetesVersion' | 'containerRuntime' | 'cni';
export const BUILD_FIELDS: readonly ClusterChangeField[] = ['kubernetesVersion', 'containerRuntime', 'cni'];

/** States in which a machine runs the cluster's Kubernetes. */
const JOINED: readonly MachineState[] = ['joining', 'joined'];
/** States in which a machine was given (or is installing) the cluster's packages. */
const INSTALLED: readonly MachineState[] = ['provisioning', 'installed', 'ready'];

export type ClusterPatchFacts = Partial<Pick<Cluster, 'ubuntuRelease' | ClusterChangeField>>;

export type ChangeDecision =
  | { readonly ok: true }
  | { readonly ok: false; readonly status: 400; readonly field: SpecField | 'ubuntuRelease'; readonly code: 'ERR_INCOMPATIBLE'; readonly message: string }
  | { readonly ok: false; readonly status: 409; readonly field: ClusterChangeField; readonly code: 'ERR_CLUSTER_LIVE' | 'ERR_MACHINES_INSTALLED'; readonly message: string };

const names = (ms: readonly Machine[]): string => {
  const shown = ms.slice(0, 5).map((m) => m.hostname ?? m.mac);
  return shown.join(', ') + (ms.length > shown.length ? ` and ${ms.length - shown.length} more` : '');
};

const effectiveState = (m: Machine): MachineState => (m.state === 'failed' ? (m.failedFrom ?? 'failed') : m.state);

/** The API field a compatibility finding is reported on: the cluster's OS is still given as `ubuntuRelease`. */
export function apiField(field: SpecField): SpecField | 'ubuntuRelease' {
  return field === 'os' ? 'ubuntuRelease' : field;
}

export function decideClusterChange(before: Cluster, patch: ClusterPatchFacts, members: readonly Machine[]): ChangeDecision {
  const after = { ...before, ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) } as Cluster;
  const compat = checkCompatibility({ os: osOfRelease(after.ubuntuRelease), kubernetesVersion: after.kubernetesVersion, containerRuntime: after.containerRuntime, cni: after.cni });
  if (!compat.ok) return { ok: false, status: 400, code: 'ERR_INCOMPATIBLE', field: apiField(compat.field), message: compat.message };
  const changed = BUILD_FIELDS.filter((f) => after[f] !== before[f]);
  const first = changed[0];
  if (first === undefined) return { ok: true };
  const what = changed.map((f) => `${f} ${before[f]} → ${after[f]}`).join(', ');
  const joined = members.filter((m) => JOINED.includes(effectiveState(m)));
  if (joined.length > 0) {
    return {
      ok: false,
      status: 409,
      code: 'ERR_CLUSTER_LIVE',
      field: first,
      message: `cluster ${before.name} has joined nodes (${names(joined)}): ${what} is an upgrade, not an edit — use POST /api/v1/clusters/${before.name}/upgrade (one minor at a time, node by node)`,
    };
  }
  const installed = members.filter((m) => INSTALLED.includes(effectiveState(m)));
  if (installed.length > 0) {
    return {
      ok: false,
      status: 409,
      code: 'ERR_MACHINES_INSTALLED',
      field: first,
      message: `machines of cluster ${before.name} were already given its packages (${names(installed)}): reimage or remove them before changing ${changed.join(', ')}`,
    };
  }
  return { ok: true };
}
