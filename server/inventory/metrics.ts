import { INVENTORY_METRICS, instrument } from '../lib/metric-catalogue.js';
import type { Metrics } from '../lib/metrics.js';
import { MACHINE_STATES } from './lifecycle.js';
import { CLUSTER_STATES } from './model.js';
import type { DiscoveryGate } from './discovery.js';
import type { Inventory } from './store.js';

/** Event types become label values; anything unexpected is folded into one, to bound the series. */
const TYPE_LABEL = /^[a-z][a-z0-9._-]{0,39}$/;

/**
 * Inventory metrics: machines and clusters by state read from the store at each scrape (so they
 * are right after a restart), and counters of events and state changes fed by the event
 * subscription. Returns the unsubscribe function.
 */
export function collectInventoryMetrics(m: Metrics, inv: Pick<Inventory, 'machines' | 'clusters' | 'events'>, version: string): () => void {
  const { machines, clusters, transitions, events, buildInfo } = INVENTORY_METRICS;
  m.collect('gauge', machines.name, machines.help, machines.labels, async () => {
    const counts = new Map<string, number>(MACHINE_STATES.map((s) => [s, 0]));
    for (const mc of await inv.machines.planFacts()) counts.set(mc.state, (counts.get(mc.state) ?? 0) + 1);
    return [...counts].map(([state, value]) => ({ labels: { state }, value }));
  });
  m.collect('gauge', clusters.name, clusters.help, clusters.labels, async () => {
    const counts = new Map<string, number>(CLUSTER_STATES.map((s) => [s, 0]));
    for (const c of await inv.clusters.list()) counts.set(c.state, (counts.get(c.state) ?? 0) + 1);
    return [...counts].map(([state, value]) => ({ labels: { state }, value }));
  });
  instrument(m, buildInfo).set({ version }, 1);
  const eventCount = instrument(m, events);
  const transitionCount = instrument(m, transitions);
  return inv.events.subscribe((e) => {
    eventCount.inc({ type: TYPE_LABEL.test(e.type) ? e.type : 'other' });
    if (e.type === 'state') {
      const from = e.data?.['from'];
      const to = e.data?.['to'];
      transitionCount.inc({ from: typeof from === 'string' ? from : 'none', to: typeof to === 'string' ? to : 'unknown' });
    }
  });
}

/** `racksmith_discovery_refused_total`, read from the discovery gates at each scrape. */
export function collectDiscoveryMetrics(m: Metrics, gates: Readonly<Record<'http' | 'dhcp', Pick<DiscoveryGate, 'refused'>>>): void {
  const { discoveryRefused: d } = INVENTORY_METRICS;
  m.collect('counter', d.name, d.help, d.labels, () => (['http', 'dhcp'] as const).map((path) => ({ labels: { path }, value: gates[path].refused() })));
}
