/** IPv4 addresses as 32-bit unsigned integers for arithmetic, dotted quads at the edges. */
export type IPv4 = string & { readonly __brand: 'IPv4' };

const QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function parseIPv4(text: string): IPv4 | null {
  const s = text.trim();
  return QUAD.test(s) ? (s as IPv4) : null;
}

export function ipToInt(ip: string): number {
  // A character loop rather than split/Number: the DHCP loop calls this several times per datagram.
  let n = 0;
  let octet = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      n = n * 256 + octet;
      octet = 0;
    } else octet = octet * 10 + (c - 48);
  }
  return (n * 256 + octet) >>> 0;
}

export function intToIp(n: number): IPv4 {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}` as IPv4;
}

export function ipFromBytes(b: Uint8Array, offset = 0): IPv4 {
  return `${b[offset]}.${b[offset + 1]}.${b[offset + 2]}.${b[offset + 3]}` as IPv4;
}

export function ipToBytes(ip: string): Buffer {
  const n = ipToInt(ip);
  // Every byte is written: no need for a zeroed (unpooled) allocation.
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(n, 0);
  return out;
}

/** Prefix length → dotted mask (24 → 255.255.255.0). */
export function prefixToMask(prefix: number): IPv4 {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) throw new RangeError(`bad prefix ${prefix}`);
  return intToIp(prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
}

export function maskToPrefix(mask: string): number | null {
  const n = ipToInt(mask);
  const inverted = ~n >>> 0;
  // A valid mask is ones then zeros: its inverse plus one is a power of two.
  if ((inverted & (inverted + 1)) !== 0) return null;
  return 32 - Math.log2(inverted + 1);
}

export function sameSubnet(a: string, b: string, mask: string): boolean {
  const m = ipToInt(mask);
  return ((ipToInt(a) & m) >>> 0) === ((ipToInt(b) & m) >>> 0);
}

export interface IPv4Range {
  readonly start: IPv4;
  readonly end: IPv4;
}

/** `10.77.0.100-10.77.0.199` → range, or null. */
export function parseRange(text: string): IPv4Range | null {
  const [a, b, ...rest] = text.split('-');
  if (a === undefined || b === undefined || rest.length > 0) return null;
  const start = parseIPv4(a);
  const end = parseIPv4(b);
  if (!start || !end || ipToInt(start) > ipToInt(end)) return null;
  return { start, end };
}

export function rangeSize(r: IPv4Range): number {
  return ipToInt(r.end) - ipToInt(r.start) + 1;
}

/**
 * A `lookup` for UDP sockets that only ever send to literal addresses (DHCP and TFTP replies go
 * to the address a request came from, a relay or a broadcast). Answering at once, instead of
 * dns.lookup's next tick, makes each send synchronous: one less queued callback per datagram,
 * and a datagram sent just before close() really leaves.
 */
export function literalLookup(address: string, _family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, 4);
}
