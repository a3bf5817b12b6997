import type { BmcDriverName, BmcTarget, PowerDriver } from './driver.js';

/**
 * One PowerDriver over several: each call goes to the driver its BMC names (`bmc.driver`; IPMI
 * when absent). The service, the reimage workflow and rack jobs stay driver-blind.
 */
export function routeDrivers(drivers: Readonly<Record<BmcDriverName, PowerDriver>>): PowerDriver {
  const pick = (t: BmcTarget): PowerDriver => drivers[t.driver ?? 'ipmi'];
  return {
    name: 'bmc',
    status: (t, signal) => pick(t).status(t, signal),
    on: (t, signal) => pick(t).on(t, signal),
    off: (t, signal) => pick(t).off(t, signal),
    cycle: (t, signal) => pick(t).cycle(t, signal),
    reset: (t, signal) => pick(t).reset(t, signal),
    setNextBoot: (t, device, opts, signal) => pick(t).setNextBoot(t, device, opts, signal),
    identify: (t, on, seconds, signal) => pick(t).identify(t, on, seconds, signal),
    facts: (t, signal) => pick(t).facts(t, signal),
  };
}
