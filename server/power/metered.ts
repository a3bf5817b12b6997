import { POWER_METRICS, instruments } from '../lib/metric-catalogue.js';
import type { Metrics } from '../lib/metrics.js';
import { PowerError, type PowerDriver, type PowerFailureKind } from './driver.js';

/**
 * A power driver that times every BMC call into `racksmith_bmc_call_duration_seconds` and counts
 * failures into `racksmith_bmc_call_failures_total`, around any driver. Kept outside the drivers
 * so a second driver (Redfish) is measured the same way without repeating it.
 */

type Action = 'status' | 'on' | 'off' | 'cycle' | 'reset' | 'bootdev' | 'identify' | 'facts';

/** The failure reasons the catalogue promises, from the driver's finer kinds. */
export function failureReason(err: unknown): 'timeout' | 'auth' | 'unreachable' | 'error' | null {
  if (!(err instanceof PowerError)) return 'error';
  const byKind: Record<PowerFailureKind, 'timeout' | 'auth' | 'unreachable' | 'error' | null> = {
    timeout: 'timeout',
    unreachable: 'unreachable',
    auth: 'auth',
    cipher: 'auth',
    rejected: 'error',
    busy: 'error',
    output: 'error',
    tool: 'error',
    tls: 'auth',
    // racksmith is stopping: not the BMC's failure.
    aborted: null,
  };
  return byKind[err.kind];
}

export function meteredDriver(driver: PowerDriver, metrics: Metrics): PowerDriver {
  const m = instruments(metrics, POWER_METRICS);
  async function timed<T>(action: Action, call: () => Promise<T>): Promise<T> {
    const done = m.callSeconds.startTimer({ driver: driver.name, action });
    try {
      const result = await call();
      done({ outcome: 'ok' });
      return result;
    } catch (err) {
      done({ outcome: 'failed' });
      const reason = failureReason(err);
      if (reason) m.callFailures.inc({ driver: driver.name, action, reason });
      throw err;
    }
  }
  return {
    name: driver.name,
    status: (t, signal) => timed('status', () => driver.status(t, signal)),
    on: (t, signal) => timed('on', () => driver.on(t, signal)),
    off: (t, signal) => timed('off', () => driver.off(t, signal)),
    cycle: (t, signal) => timed('cycle', () => driver.cycle(t, signal)),
    reset: (t, signal) => timed('reset', () => driver.reset(t, signal)),
    setNextBoot: (t, device, opts, signal) => timed('bootdev', () => driver.setNextBoot(t, device, opts, signal)),
    identify: (t, on, seconds, signal) => timed('identify', () => driver.identify(t, on, seconds, signal)),
    facts: (t, signal) => timed('facts', () => driver.facts(t, signal)),
  };
}
