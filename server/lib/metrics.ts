import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The metrics services feed, through a narrow interface: a service asks for a counter, gauge or
 * histogram by name and gets a handle with `inc`/`set`/`observe`, nothing else of prom-client.
 * Values a service already keeps (its `health().detail` counters) or that live in the store
 * (machines by state) are read at scrape time with `collect`. Asking twice for the same name
 * returns the same metric, so a service built twice against one registry (tests) is harmless;
 * asking for it with another type or other labels is a programming error and throws.
 */

export type LabelValues<L extends string> = Partial<Record<L, string | number>>;

export interface CounterHandle<L extends string = string> {
  inc(labels?: LabelValues<L>, value?: number): void;
}

export interface GaugeHandle<L extends string = string> {
  set(labels: LabelValues<L>, value: number): void;
  inc(labels?: LabelValues<L>, value?: number): void;
  dec(labels?: LabelValues<L>, value?: number): void;
}

export interface HistogramHandle<L extends string = string> {
  observe(labels: LabelValues<L>, value: number): void;
  /** Starts a timer; calling the result observes the seconds elapsed (with more labels, e.g. the outcome). */
  startTimer(labels?: LabelValues<L>): (more?: LabelValues<L>) => number;
}

export interface Sample<L extends string = string> {
  readonly labels?: LabelValues<L>;
  readonly value: number;
}

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface Metrics {
  counter<L extends string = never>(name: string, help: string, labels?: readonly L[]): CounterHandle<L>;
  gauge<L extends string = never>(name: string, help: string, labels?: readonly L[]): GaugeHandle<L>;
  histogram<L extends string = never>(name: string, help: string, labels?: readonly L[], buckets?: readonly number[]): HistogramHandle<L>;
  /**
   * A counter or gauge whose samples are read when Prometheus scrapes. A failing `read` leaves the
   * metric empty for that scrape (and counts the failure) instead of failing the whole scrape.
   */
  collect<L extends string = never>(
    type: 'counter' | 'gauge',
    name: string,
    help: string,
    labels: readonly L[],
    read: () => readonly Sample<L>[] | Promise<readonly Sample<L>[]>,
  ): void;
}

export interface MetricsRegistry extends Metrics {
  /** The Prometheus text exposition (format 0.0.4). */
  text(): Promise<string>;
  readonly contentType: string;
}

/** Seconds; from a fast loopback reply to a slow BMC or a long kubeadm step. */
export const DEFAULT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export class MetricsError extends Error {
  readonly code = 'ERR_METRIC_DEFINITION';
  constructor(message: string) {
    super(message);
    this.name = 'MetricsError';
  }
}

interface Entry {
  readonly type: MetricType;
  readonly labels: string;
  readonly handle: unknown;
}

export function createMetrics(opts: { readonly processMetrics?: boolean } = {}): MetricsRegistry {
  const registry = new Registry();
  const entries = new Map<string, Entry>();
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  const collectErrors = new Counter({
    name: 'racksmith_metrics_collect_errors_total',
    help: 'Scrape-time reads that failed, by metric',
    labelNames: ['metric'],
    registers: [registry],
  });

  function define<T>(type: MetricType, name: string, labels: readonly string[], make: () => T): T {
    if (!NAME.test(name)) throw new MetricsError(`metric name "${name}" is not a valid Prometheus name`);
    for (const l of labels) if (!LABEL.test(l) || l.startsWith('__')) throw new MetricsError(`metric ${name}: label "${l}" is not a valid label name`);
    const key = labels.join(',');
    const existing = entries.get(name);
    if (existing) {
      if (existing.type !== type || existing.labels !== key) {
        throw new MetricsError(`metric ${name} is already defined as a ${existing.type} with labels [${existing.labels}]`);
      }
      return existing.handle as T;
    }
    const handle = make();
    entries.set(name, { type, labels: key, handle });
    return handle;
  }

  const clean = <L extends string>(labels: LabelValues<L> | undefined): Record<string, string | number> => {
    const out: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(labels ?? {})) if (v !== undefined) out[k] = v as string | number;
    return out;
  };

  return {
    contentType: registry.contentType,
    text: () => registry.metrics(),
    counter<L extends string>(name: string, help: string, labels: readonly L[] = []) {
      return define('counter', name, labels, (): CounterHandle<L> => {
        const c = new Counter<string>({ name, help, labelNames: [...labels], registers: [registry] });
        return { inc: (l, v = 1) => c.inc(clean(l), v) };
      });
    },
    gauge<L extends string>(name: string, help: string, labels: readonly L[] = []) {
      return define('gauge', name, labels, (): GaugeHandle<L> => {
        const g = new Gauge<string>({ name, help, labelNames: [...labels], registers: [registry] });
        return { set: (l, v) => g.set(clean(l), v), inc: (l, v = 1) => g.inc(clean(l), v), dec: (l, v = 1) => g.dec(clean(l), v) };
      });
    },
    histogram<L extends string>(name: string, help: string, labels: readonly L[] = [], buckets: readonly number[] = DEFAULT_BUCKETS) {
      return define('histogram', name, labels, (): HistogramHandle<L> => {
        const h = new Histogram<string>({ name, help, labelNames: [...labels], buckets: [...buckets], registers: [registry] });
        return {
          observe: (l, v) => h.observe(clean(l), v),
          startTimer: (l) => {
            const end = h.startTimer(clean(l));
            return (more) => end(clean(more));
          },
        };
      });
    },
    collect<L extends string>(type: 'counter' | 'gauge', name: string, help: string, labels: readonly L[], read: () => readonly Sample<L>[] | Promise<readonly Sample<L>[]>) {
      define(type, name, labels, () => {
        // prom-client calls collect() on each scrape; the samples replace the previous ones.
        async function collect(this: Counter | Gauge): Promise<void> {
          this.reset();
          let samples: readonly Sample<L>[];
          try {
            samples = await read();
          } catch {
            collectErrors.inc({ metric: name });
            return;
          }
          for (const s of samples) {
            if (!Number.isFinite(s.value)) continue;
            if (this instanceof Counter) {
              if (s.value >= 0) this.inc(clean(s.labels), s.value);
            } else this.set(clean(s.labels), s.value);
          }
        }
        const config = { name, help, labelNames: [...labels], registers: [registry], collect };
        return type === 'counter' ? new Counter(config) : new Gauge(config);
      });
    },
  };
}

const noop = (): void => undefined;

/** For services built without a registry (unit tests, CLI commands). */
export const NO_METRICS: Metrics = {
  counter: () => ({ inc: noop }),
  gauge: () => ({ set: noop, inc: noop, dec: noop }),
  histogram: () => ({ observe: noop, startTimer: () => () => 0 }),
  collect: noop,
};
