import { readFile } from 'node:fs/promises';
import { parseMac, type Mac } from './mac.js';

/**
 * IP → MAC from the kernel's neighbour table. TFTP sees only an address; the kernel learned the
 * MAC when the client's packets arrived (or when we answered), whatever gave the client its
 * address — racksmith's own DHCP, a site DHCP server beside racksmith in proxy mode, or a static
 * configuration. `/proc/net/arp` is per network namespace, like everything under /proc/net.
 */

/** Narrow interface a service takes: which machine is behind this address, if any is known. */
export type ClientResolver = (ip: string) => Promise<Mac | null>;

/** ARP flag ATF_COM (0x2): the entry is complete; an incomplete one carries a zero MAC. */
const ATF_COM = 0x2;

/**
 * Parses `/proc/net/arp`:
 *   IP address       HW type     Flags       HW address            Mask     Device
 *   10.77.0.50       0x1         0x2         52:54:00:77:00:01     *        eth0
 */
export function parseArpTable(text: string): Map<string, Mac> {
  const out = new Map<string, Mac>();
  for (const line of text.split('\n').slice(1)) {
    const [ip, , flags, hw] = line.trim().split(/\s+/);
    if (ip === undefined || flags === undefined || hw === undefined) continue;
    const f = Number.parseInt(flags, 16);
    if (!Number.isFinite(f) || (f & ATF_COM) === 0) continue;
    const mac = parseMac(hw);
    if (mac && mac !== '00:00:00:00:00:00') out.set(ip, mac);
  }
  return out;
}

export function createArpResolver(path = '/proc/net/arp'): ClientResolver {
  return async (ip) => {
    try {
      return parseArpTable(await readFile(path, 'utf8')).get(ip) ?? null;
    } catch {
      return null;
    }
  };
}

/** Tries each resolver in turn (main.ts puts DHCP leases first, the neighbour table second). */
export function firstResolver(resolvers: readonly ClientResolver[]): ClientResolver {
  return async (ip) => {
    for (const r of resolvers) {
      const mac = await r(ip);
      if (mac) return mac;
    }
    return null;
  };
}
