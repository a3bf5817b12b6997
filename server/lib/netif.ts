import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { ipToInt, maskToPrefix } from './ipv4.js';

/**
 * Which local interface reaches an address, and its MTU. Used to keep UDP payloads within one
 * Ethernet frame (an IP fragment lost on the way loses the whole block, and some PXE stacks do
 * not reassemble at all). Reads the kernel's tables of the current network namespace.
 */

export interface RouteEntry {
  readonly iface: string;
  readonly destination: number;
  readonly mask: number;
}

function fromProcHex(hex: string): number {
  // /proc/net/route prints addresses in host byte order; every Linux racksmith targets is little-endian.
  const n = Number.parseInt(hex, 16) >>> 0;
  return (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | (n >>> 24)) >>> 0;
}

/** Parses `/proc/net/route` (IPv4 routes, one per line after the header). */
export function parseRouteTable(text: string): RouteEntry[] {
  const out: RouteEntry[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const [iface, dest, , , , , , mask] = f;
    if (!iface || !dest || !mask || !/^[0-9A-Fa-f]{8}$/.test(dest) || !/^[0-9A-Fa-f]{8}$/.test(mask)) continue;
    out.push({ iface, destination: fromProcHex(dest), mask: fromProcHex(mask) });
  }
  return out;
}

/** Longest-prefix match over the routes. */
export function routeInterface(routes: readonly RouteEntry[], ip: string): string | null {
  const a = ipToInt(ip);
  let best: RouteEntry | null = null;
  let bestLen = -1;
  for (const r of routes) {
    if (((a & r.mask) >>> 0) !== r.destination) continue;
    const len = maskToPrefix(intMask(r.mask)) ?? 0;
    if (len > bestLen) {
      best = r;
      bestLen = len;
    }
  }
  return best?.iface ?? null;
}

function intMask(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** The interface that reaches `ip`: a directly attached subnet first, then the routing table. */
export function interfaceTowards(ip: string): string | null {
  const a = ipToInt(ip);
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    for (const x of addrs ?? []) {
      if (x.family !== 'IPv4') continue;
      if (x.address === ip) return name;
      const m = ipToInt(x.netmask);
      if (((a & m) >>> 0) === ((ipToInt(x.address) & m) >>> 0)) return name;
    }
  }
  try {
    return routeInterface(parseRouteTable(readFileSync('/proc/net/route', 'utf8')), ip);
  } catch {
    return null;
  }
}

/** MTU of the interface that reaches `ip`; 1500 (plain Ethernet) when it cannot be told. */
export function mtuTowards(ip: string): number {
  const iface = interfaceTowards(ip);
  if (!iface || !/^[\w.:@-]{1,15}$/.test(iface)) return 1500;
  try {
    const mtu = Number(readFileSync(`/sys/class/net/${iface}/mtu`, 'utf8').trim());
    return Number.isInteger(mtu) && mtu >= 68 ? mtu : 1500;
  } catch {
    return 1500;
  }
}
