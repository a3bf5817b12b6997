import type { NetworkInterfaceInfo } from 'node:os';
import { intToIp, ipToInt, type IPv4 } from '../lib/ipv4.js';

/**
 * Which interfaces DHCP serves and which of them a datagram belongs to. Pure: the loop passes in
 * `os.networkInterfaces()` and the names of the namespace's other links.
 */

export interface ServedInterface {
  readonly name: string;
  readonly address: IPv4;
  readonly netmask: IPv4;
  readonly network: IPv4;
  /**
   * `network` and `netmask` as numbers: the loop asks which interface an address is on several
   * times per datagram (ingress, server id, the reply's socket).
   */
  readonly networkBits: number;
  readonly maskBits: number;
}

export type InterfaceTable = NodeJS.Dict<NetworkInterfaceInfo[]>;

/** Every non-loopback interface with an IPv4 address (its first one), or just the named one. */
export function servedInterfaces(table: InterfaceTable, only: string | undefined): { served: ServedInterface[]; error: string | null } {
  const served: ServedInterface[] = [];
  for (const [name, addrs] of Object.entries(table)) {
    if (only !== undefined && name !== only) continue;
    const a = (addrs ?? []).find((x) => x.family === 'IPv4' && !x.internal);
    if (!a) continue;
    const maskBits = ipToInt(a.netmask);
    const networkBits = (ipToInt(a.address) & maskBits) >>> 0;
    served.push({ name, address: a.address as IPv4, netmask: a.netmask as IPv4, network: intToIp(networkBits), networkBits, maskBits });
  }
  if (only !== undefined && served.length === 0) {
    const known = Object.keys(table).filter((n) => (table[n] ?? []).some((x) => !x.internal));
    const exists = table[only] !== undefined;
    return {
      served,
      error: exists
        ? `interface ${only} has no IPv4 address`
        : `no interface named ${only} (interfaces with addresses: ${known.join(', ') || 'none'})`,
    };
  }
  if (served.length === 0) return { served, error: 'no interface with an IPv4 address to serve on' };
  return { served, error: null };
}

export function interfaceOn(served: readonly ServedInterface[], ip: string): ServedInterface | null {
  const n = ipToInt(ip);
  for (const s of served) if (((n & s.maskBits) >>> 0) === s.networkBits) return s;
  return null;
}

/**
 * Where a datagram came from, as far as a socket without IP_PKTINFO can tell:
 * - it arrived on a socket bound to one interface's address (unicast to us), or on a socket
 *   bound to one device (an inherited, device-bound socket): that interface;
 * - relayed (giaddr set): the relay's subnet decides, no interface;
 * - from a configured source address: the served interface on that subnet;
 * - a broadcast from 0.0.0.0 on the wildcard socket: the only served interface when ingress is
 *   exact, otherwise unknown (`null`), and the caller decides (see docs/decisions).
 */
export function ingress(
  served: readonly ServedInterface[],
  arrivedOn: ServedInterface | null,
  exact: boolean,
  source: string,
  giaddr: string,
): ServedInterface | null {
  if (arrivedOn) return arrivedOn;
  if (giaddr !== '0.0.0.0') return interfaceOn(served, source);
  if (source !== '0.0.0.0') return interfaceOn(served, source);
  return exact && served.length === 1 ? (served[0] as ServedInterface) : null;
}
