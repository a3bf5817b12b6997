import type { Machine } from '../inventory/model.js';
import type { MachineState } from '../inventory/lifecycle.js';
import type { PrefetchItem } from '../artifacts/prefetch.js';
import type { ClusterChecks } from './checks.js';

/**
 * The cluster side of a rack power-on (the power service's `PowerOnGate`): which clusters the
 * powered machines will install, their preflight, and their prefetch.
 */

/** States in which a powered-on machine runs its installer or its first boot, and so uses its cluster's upstreams. */
const INSTALLING: readonly MachineState[] = ['assigned', 'provisioning', 'installed', 'reimaging'];

/** The clusters of the machines a power-on makes install, sorted. Pure. */
export function installingClusters(machines: readonly Pick<Machine, 'cluster' | 'role' | 'state' | 'failedFrom'>[]): string[] {
  const names = new Set<string>();
  for (const m of machines) {
    if (!m.cluster || !m.role) continue;
    const state = m.state === 'failed' ? m.failedFrom : m.state;
    if (state && INSTALLING.includes(state)) names.add(m.cluster);
  }
  return [...names].sort();
}

export function createPowerOnGate(checks: ClusterChecks) {
  return {
    clusters: (machines: readonly Machine[]): readonly string[] => installingClusters(machines),
    async preflight(clusters: readonly string[]) {
      const failures: { cluster: string; check: string; detail: string }[] = [];
      for (const name of clusters) {
        const report = await checks.preflight(name);
        for (const c of report.checks) if (c.state === 'failed') failures.push({ cluster: name, check: c.title, detail: c.detail });
      }
      return { ok: failures.length === 0, failures };
    },
    async prefetch(clusters: readonly string[], onProgress: (items: readonly PrefetchItem[]) => void, signal: AbortSignal) {
      const r = await checks.prefetch(clusters, { onProgress, signal, intervalMs: 1000 });
      return { ok: r.ok, items: r.items };
    },
  };
}
