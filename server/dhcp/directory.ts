import type { MachineDirectory, MachineFacts } from '../inventory/store.js';
import type { Mac } from '../lib/mac.js';

/**
 * Brings the DHCP service's machine directory up to date with the machines that changed since it
 * was read: one point read per changed MAC instead of reading every machine again. The maps are
 * amended in place. A MAC's old reservation is dropped only if it still points at that MAC, so
 * two machines that swap addresses, in either order, end up each with its own.
 */
export function patchDirectory(d: MachineDirectory, changed: Iterable<string>, read: (mac: Mac) => MachineFacts | null, revision: number): MachineDirectory {
  for (const mac of new Set(changed)) {
    const before = d.byMac.get(mac);
    if (before?.ip && d.byIp.get(before.ip) === mac) d.byIp.delete(before.ip);
    const now = read(mac as Mac);
    if (now === null) d.byMac.delete(mac);
    else {
      d.byMac.set(mac, now);
      if (now.ip !== null) d.byIp.set(now.ip, now.mac);
    }
  }
  return { byMac: d.byMac, byIp: d.byIp, revision };
}
