import type { BmcFactsRecord, Machine } from './model.js';

/**
 * Does the BMC know the machine's MAC? A Redfish BMC lists its system's NICs; a MAC in the
 * inventory that the BMC does not report means the sheet and the rack disagree — a swapped cable,
 * a machine in the wrong row, a typo — and power actions would hit another machine's BMC.
 * `null`: the BMC lists no NICs (IPMI), so nothing can be said.
 */
export function macReported(m: Pick<Machine, 'mac'>, facts: BmcFactsRecord | null): boolean | null {
  if (!facts || facts.nics === null || facts.nics.length === 0) return null;
  return facts.nics.includes(m.mac);
}
