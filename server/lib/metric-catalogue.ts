import type { ServiceHealth } from './service.js';
import type { CounterHandle, GaugeHandle, HistogramHandle, Metrics, MetricType, Sample } from './metrics.js';

/**
 * Every racksmith metric in one table: its name, type, labels and who feeds it. docs/metrics.md
 * is this table (a test compares them). A service takes its group's handles with
 * `instruments(metrics, DHCP_METRICS)`; counters a service already keeps in `health().detail`
 * are read at scrape time through HEALTH_BRIDGES instead, so that service needs no change.
 */

export type Feeder = 'http' | 'inventory' | 'event-stream' | 'dhcp' | 'tftp' | 'orchestrator' | 'power' | 'process';

export interface MetricDef<T extends MetricType = MetricType, L extends string = string> {
  readonly type: T;
  readonly name: string;
  readonly help: string;
  readonly labels: readonly L[];
  readonly buckets?: readonly number[];
  readonly feeder: Feeder;
}

const def = <T extends MetricType, const L extends string = never>(
  type: T,
  name: string,
  feeder: Feeder,
  help: string,
  labels: readonly L[] = [],
  buckets?: readonly number[],
): MetricDef<T, L> => ({ type, name, feeder, help, labels, ...(buckets ? { buckets } : {}) });

/** Sub-millisecond to a second: a DHCP reply waits only for the store. */
const FAST_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] as const;
/** IPMI over lanplus: tens of milliseconds when healthy, seconds when a BMC is retrying. */
const BMC_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;
/** kubeadm steps: seconds (copy a file) to half an hour (image pulls on a slow mirror). */
const STEP_BUCKETS = [0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800] as const;

export const HTTP_METRICS = {
  requests: def('counter', 'racksmith_http_requests_total', 'http', 'HTTP requests answered, by method, route template and status', ['method', 'route', 'status']),
  duration: def('histogram', 'racksmith_http_request_duration_seconds', 'http', 'HTTP request latency until the response is finished, by method and route template', ['method', 'route']),
} as const;

export const INVENTORY_METRICS = {
  machines: def('gauge', 'racksmith_machines', 'inventory', 'Machines in the inventory, by lifecycle state (read at scrape time)', ['state']),
  clusters: def('gauge', 'racksmith_clusters', 'inventory', 'Clusters, by state (read at scrape time)', ['state']),
  transitions: def('counter', 'racksmith_machine_transitions_total', 'inventory', 'Machine state changes since start, by from and to state', ['from', 'to']),
  events: def('counter', 'racksmith_events_total', 'inventory', 'Events appended to the inventory since start, by type', ['type']),
  eventsPruned: def('counter', 'racksmith_events_pruned_total', 'inventory', 'Events deleted by retention since start, by rule (boot traffic, or every event)', ['rule']),
  serviceUp: def('gauge', 'racksmith_service_up', 'inventory', '1 when the service is serving, 0 when it is starting, stopping or failed (services turned off are absent)', ['service']),
  buildInfo: def('gauge', 'racksmith_build_info', 'inventory', 'Always 1; the version is the label', ['version']),
  discoveryRefused: def('counter', 'racksmith_discovery_refused_total', 'inventory', 'Unknown MACs answered but not recorded as discovered machines because their source was over its allowance, by path (http: per client address; dhcp: per segment)', ['path']),
} as const;

export const EVENT_STREAM_METRICS = {
  clients: def('gauge', 'racksmith_event_stream_clients', 'event-stream', 'Open event streams (consoles, racksmith watch)'),
  dropped: def('counter', 'racksmith_event_stream_dropped_total', 'event-stream', 'Event streams the server ended, by reason (slow: the client did not keep up)', ['reason']),
} as const;

export const DHCP_METRICS = {
  received: def('counter', 'racksmith_dhcp_received_total', 'dhcp', 'DHCP datagrams received'),
  replies: def('counter', 'racksmith_dhcp_replies_total', 'dhcp', 'DHCP replies sent, by reason (offer, ack, ack-reused, ack-inform, nak-wrong-network, nak-wrong-address, nak-taken, proxy-offer, boot-server-ack)', ['reason']),
  dropped: def('counter', 'racksmith_dhcp_dropped_total', 'dhcp', 'DHCP datagrams not answered, by reason (a decoder error code such as ERR_DHCP_SHORT, ignored-not-pxe, ignored-unknown-mac, ignored-pool-exhausted, queue-full, send-error…)', ['reason']),
  leasesInUse: def('gauge', 'racksmith_dhcp_leases_in_use', 'dhcp', 'Leases in the DHCP lease book (authoritative mode)'),
  offersOutstanding: def('gauge', 'racksmith_dhcp_offers_outstanding', 'dhcp', 'Addresses offered and held, not yet requested'),
  unrecorded: def('counter', 'racksmith_dhcp_steps_unrecorded_total', 'dhcp', 'Known machines\' DHCP steps (events, last step) answered but not recorded: the store refused or failed the commit, or too many were waiting'),
  offerSeconds: def('histogram', 'racksmith_dhcp_offer_duration_seconds', 'dhcp', 'Time from a DISCOVER received to its OFFER sent', [], FAST_BUCKETS),
} as const;

export const TFTP_METRICS = {
  transfers: def('counter', 'racksmith_tftp_transfers_total', 'tftp', 'TFTP transfers ended, by outcome (complete, unconfirmed: all sent but the last ACK lost, timeout, client-abort, failed, probe)', ['outcome']),
  bytes: def('counter', 'racksmith_tftp_sent_bytes_total', 'tftp', 'File bytes sent over TFTP'),
  retransmissions: def('counter', 'racksmith_tftp_retransmitted_blocks_total', 'tftp', 'TFTP DATA blocks sent again after a timeout or a duplicate ACK'),
  errors: def('counter', 'racksmith_tftp_errors_total', 'tftp', 'TFTP requests refused or datagrams dropped, by reason (not-found, denied, unreadable, write, mode, busy, client-limit, malformed, wait-expired)', ['reason']),
  active: def('gauge', 'racksmith_tftp_active_transfers', 'tftp', 'TFTP transfers in progress'),
  waiting: def('gauge', 'racksmith_tftp_waiting_requests', 'tftp', 'TFTP read requests waiting for a transfer slot (over tftp-max-transfers)'),
  waited: def('counter', 'racksmith_tftp_waited_requests_total', 'tftp', 'TFTP read requests that had to wait for a transfer slot'),
} as const;

export const ORCHESTRATOR_METRICS = {
  stepSeconds: def('histogram', 'racksmith_orchestration_step_duration_seconds', 'orchestrator', 'Duration of each orchestration step (kubeadm init, join, CNI…), by step and outcome (ok, failed)', ['step', 'outcome'], STEP_BUCKETS),
  stepFailures: def('counter', 'racksmith_orchestration_step_failures_total', 'orchestrator', 'Orchestration steps that failed, by step', ['step']),
} as const;

export const POWER_METRICS = {
  callSeconds: def('histogram', 'racksmith_bmc_call_duration_seconds', 'power', 'BMC call latency, by driver, action (on, off, cycle, status, bootdev, identify, facts) and outcome (ok, failed)', ['driver', 'action', 'outcome'], BMC_BUCKETS),
  callFailures: def('counter', 'racksmith_bmc_call_failures_total', 'power', 'BMC calls that failed, by driver, action and reason (timeout, auth, unreachable, error)', ['driver', 'action', 'reason']),
} as const;

export const METRIC_GROUPS = {
  http: HTTP_METRICS,
  inventory: INVENTORY_METRICS,
  'event-stream': EVENT_STREAM_METRICS,
  dhcp: DHCP_METRICS,
  tftp: TFTP_METRICS,
  orchestrator: ORCHESTRATOR_METRICS,
  power: POWER_METRICS,
} as const;

type AnyDef = MetricDef<MetricType, string>;
export type HandleOf<D> =
  D extends MetricDef<'counter', infer L> ? CounterHandle<L> : D extends MetricDef<'gauge', infer L> ? GaugeHandle<L> : D extends MetricDef<'histogram', infer L> ? HistogramHandle<L> : never;

export function instrument<D extends AnyDef>(m: Metrics, d: D): HandleOf<D> {
  switch (d.type) {
    case 'counter':
      return m.counter(d.name, d.help, d.labels) as HandleOf<D>;
    case 'gauge':
      return m.gauge(d.name, d.help, d.labels) as HandleOf<D>;
    default:
      return m.histogram(d.name, d.help, d.labels, d.buckets) as HandleOf<D>;
  }
}

/** Handles for a whole group: `const dhcp = instruments(metrics, DHCP_METRICS); dhcp.packets.inc({direction: 'in', type: 'discover'})`. */
export function instruments<G extends Record<string, AnyDef>>(m: Metrics, group: G): { [K in keyof G]: HandleOf<G[K]> } {
  return Object.fromEntries(Object.entries(group).map(([k, d]) => [k, instrument(m, d)])) as unknown as { [K in keyof G]: HandleOf<G[K]> };
}

// ── scrape-time reads of counters services keep themselves ─────────────────────────────────

/** A number at a dotted path of a service's health detail, or undefined. */
export function detailNumber(detail: Record<string, unknown> | undefined, path: string): number | undefined {
  let v: unknown = detail;
  for (const key of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export interface HealthBridge {
  readonly def: MetricDef<'counter' | 'gauge', string>;
  readonly service: string;
  /** Label values → the dotted path of the number in `health().detail`. */
  readonly paths?: readonly (readonly [labels: Record<string, string>, path: string])[];
  /** A path to an object of counters: each key becomes the value of `label`. */
  readonly each?: { readonly label: string; readonly path: string };
}

/** The numbers of an object at a dotted path of a health detail, by key. */
export function detailCounts(detail: Record<string, unknown> | undefined, path: string): [string, number][] {
  let v: unknown = detail;
  for (const key of path.split('.')) {
    if (v === null || typeof v !== 'object') return [];
    v = (v as Record<string, unknown>)[key];
  }
  if (v === null || typeof v !== 'object') return [];
  return Object.entries(v as Record<string, unknown>).filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1]));
}

/**
 * The DHCP service (server/dhcp) and the TFTP service (server/tftp) count in `health().detail`,
 * so their counters are read from there. A service whose detail lacks a path simply yields no
 * sample for it.
 */
export const HEALTH_BRIDGES: readonly HealthBridge[] = [
  { def: INVENTORY_METRICS.eventsPruned, service: 'event-retention', each: { label: 'rule', path: 'pruned' } },
  { def: DHCP_METRICS.received, service: 'dhcp', paths: [[{}, 'received']] },
  { def: DHCP_METRICS.replies, service: 'dhcp', each: { label: 'reason', path: 'replies' } },
  { def: DHCP_METRICS.dropped, service: 'dhcp', each: { label: 'reason', path: 'dropped' } },
  { def: DHCP_METRICS.leasesInUse, service: 'dhcp', paths: [[{}, 'leases']] },
  { def: DHCP_METRICS.offersOutstanding, service: 'dhcp', paths: [[{}, 'offers']] },
  { def: DHCP_METRICS.unrecorded, service: 'dhcp', paths: [[{}, 'unrecorded']] },
  {
    def: TFTP_METRICS.transfers,
    service: 'tftp',
    paths: [
      [{ outcome: 'complete' }, 'counters.transfersCompleted'],
      [{ outcome: 'timeout' }, 'counters.transfersTimedOut'],
      [{ outcome: 'unconfirmed' }, 'counters.transfersUnconfirmed'],
      [{ outcome: 'client-abort' }, 'counters.transfersAbortedByClient'],
      [{ outcome: 'failed' }, 'counters.transfersFailed'],
      [{ outcome: 'probe' }, 'counters.probes'],
    ],
  },
  { def: TFTP_METRICS.bytes, service: 'tftp', paths: [[{}, 'counters.bytesSent']] },
  { def: TFTP_METRICS.retransmissions, service: 'tftp', paths: [[{}, 'counters.retransmittedBlocks']] },
  {
    def: TFTP_METRICS.errors,
    service: 'tftp',
    paths: [
      [{ reason: 'not-found' }, 'counters.refusedNotFound'],
      [{ reason: 'denied' }, 'counters.refusedDenied'],
      [{ reason: 'unreadable' }, 'counters.refusedUnreadable'],
      [{ reason: 'write' }, 'counters.refusedWrite'],
      [{ reason: 'mode' }, 'counters.refusedMode'],
      [{ reason: 'busy' }, 'counters.refusedBusy'],
      [{ reason: 'client-limit' }, 'counters.refusedClientLimit'],
      [{ reason: 'malformed' }, 'counters.malformed'],
      [{ reason: 'wait-expired' }, 'counters.waitExpired'],
    ],
  },
  { def: TFTP_METRICS.active, service: 'tftp', paths: [[{}, 'active']] },
  { def: TFTP_METRICS.waiting, service: 'tftp', paths: [[{}, 'waiting']] },
  { def: TFTP_METRICS.waited, service: 'tftp', paths: [[{}, 'counters.waited']] },
];

/** Registers the bridges and `racksmith_service_up` over the services' health, read at each scrape. */
export function collectServiceHealth(m: Metrics, health: () => Record<string, ServiceHealth>, bridges: readonly HealthBridge[] = HEALTH_BRIDGES): void {
  for (const b of bridges) {
    m.collect(b.def.type, b.def.name, b.def.help, b.def.labels, () => {
      const detail = health()[b.service]?.detail;
      const out: Sample[] = [];
      for (const [labels, path] of b.paths ?? []) {
        const value = detailNumber(detail, path);
        if (value !== undefined) out.push({ labels, value });
      }
      if (b.each) {
        // Keys come from the service's own fixed sets (reasons, error codes); cap them all the same.
        for (const [key, value] of detailCounts(detail, b.each.path).slice(0, 200)) out.push({ labels: { [b.each.label]: key }, value });
      }
      return out;
    });
  }
  const up = INVENTORY_METRICS.serviceUp;
  m.collect('gauge', up.name, up.help, up.labels, () =>
    Object.entries(health())
      .filter(([, h]) => h.state !== 'off')
      .map(([service, h]) => ({ labels: { service }, value: h.state === 'serving' ? 1 : 0 })),
  );
}

/** The docs/metrics.md table. */
export function metricsMarkdown(): string {
  const rows = Object.values(METRIC_GROUPS).flatMap((g) => Object.values(g) as AnyDef[]);
  const bridged = new Set(HEALTH_BRIDGES.map((b) => b.def.name));
  const lines = rows.map((d) => {
    const how = bridged.has(d.name) ? `${d.feeder} (read from health detail)` : d.feeder;
    return `| \`${d.name}\` | ${d.type} | ${d.labels.map((l) => `\`${l}\``).join(', ') || '—'} | ${how} | ${d.help.replace(/\|/g, '\\|')} |`;
  });
  return ['| metric | type | labels | fed by | meaning |', '|---|---|---|---|---|', ...lines].join('\n') + '\n';
}
