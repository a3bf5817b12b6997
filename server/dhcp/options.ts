import { ipFromBytes, ipToBytes, type IPv4 } from '../lib/ipv4.js';
import { ProtocolError } from './errors.js';

/**
 * DHCP options are kept raw, by code: `DhcpOptions` maps a code to its value bytes, with the
 * instances of a repeated code already concatenated (RFC 3396 §7) and in the order each code
 * first appeared. The codec never interprets a value; the typed getters below do, each checking
 * the length its RFC gives and throwing `ProtocolError` otherwise, so that a malformed option is
 * noticed only by the code that needs it, and an unknown option travels untouched.
 */
export type DhcpOptions = ReadonlyMap<number, Buffer>;

/** Option codes (RFC 2132 unless noted), with a name lookup and an `unknown (n)` fallback. */
export const OPTION = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS_SERVERS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  BROADCAST_ADDRESS: 28,
  VENDOR_SPECIFIC: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  TFTP_SERVER_NAME: 66,
  BOOTFILE_NAME: 67,
  /** RFC 3004. iPXE sends the bare string `iPXE` rather than RFC 3004's length-prefixed list. */
  USER_CLASS: 77,
  /** RFC 3046: added by relay agents, echoed by servers. */
  RELAY_AGENT_INFO: 82,
  /** RFC 4578 §2.1 (client system architecture), with erratum 4624. */
  CLIENT_ARCH: 93,
  /** RFC 4578 §2.2 (client network device interface: UNDI version). */
  CLIENT_NDI: 94,
  /** RFC 4578 §2.3 (client machine identifier, the SMBIOS UUID). */
  CLIENT_GUID: 97,
  /** iPXE's encapsulated options (ipxe.org/cfg); presence alone identifies iPXE. */
  IPXE_ENCAP: 175,
  END: 255,
} as const;
export type OptionCode = (typeof OPTION)[keyof typeof OPTION];

const OPTION_NAMES = new Map<number, string>(Object.entries(OPTION).map(([name, code]) => [code, name.toLowerCase().replace(/_/g, '-')]));

export function optionName(code: number): string {
  return OPTION_NAMES.get(code) ?? `unknown (${code})`;
}

/** RFC 2132 §9.6 message types. */
export const MESSAGE_TYPE = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type MessageTypeName = Lowercase<keyof typeof MESSAGE_TYPE>;

const MESSAGE_TYPE_NAMES: readonly MessageTypeName[] = ['discover', 'offer', 'request', 'decline', 'ack', 'nak', 'release', 'inform'];

export function messageTypeName(n: number): MessageTypeName | `unknown (${number})` {
  return MESSAGE_TYPE_NAMES[n - 1] ?? `unknown (${n})`;
}

export function messageTypeCode(name: MessageTypeName): number {
  return MESSAGE_TYPE_NAMES.indexOf(name) + 1;
}

/** iPXE encapsulated sub-options (inside option 175) that a server sets. */
export const IPXE_SUBOPTION = {
  /** `no-pxedhcp`: do not wait for ProxyDHCP offers (saves ~3 s per DHCP in iPXE). */
  NO_PXEDHCP: 176,
} as const;

/** PXE vendor sub-options (inside option 43 when option 60 is `PXEClient`), PXE spec 2.1 §2.4.2. */
export const PXE_SUBOPTION = {
  DISCOVERY_CONTROL: 6,
  BOOT_ITEM: 71,
} as const;

// ── Reading an option area ───────────────────────────────────────────────────────────────────

/**
 * Parses one option area of a datagram (bytes `from`…`to`: the options field, or `file`/`sname`
 * when overloaded) into `into`, each value a view of the datagram. A repeated code's instances
 * are collected in `repeats` (all of them, in order), for the caller to concatenate once
 * (RFC 3396 §7) — not concatenated as they come, which a datagram of thousands of tiny repeats
 * would make quadratic. PAD is a single octet with no length (RFC 2132 §3.1); END stops the area
 * (§3.2). An area that simply runs out without END is accepted: several firmwares fill
 * `file`/`sname` to the last byte. `overloaded`: which of `file` or `sname` the area is (option 52
 * may not appear there, RFC 2131 §4.1), or null for the options field.
 */
export function readOptionArea(
  buf: Uint8Array,
  from: number,
  to: number,
  into: Map<number, Buffer>,
  repeats: Map<number, Uint8Array[]>,
  overloaded: 'file' | 'sname' | null,
): void {
  let p = from;
  while (p < to) {
    const at = p;
    const code = buf[p++] as number;
    if (code === OPTION.PAD) continue;
    if (code === OPTION.END) return;
    if (overloaded !== null && code === OPTION.OVERLOAD) {
      throw new ProtocolError('ERR_DHCP_OVERLOAD', `option 52 (overload) appears inside the ${overloaded} field; RFC 2131 §4.1 allows it only in the options field`, from);
    }
    if (p >= to) throw new ProtocolError('ERR_DHCP_OPTION_TRUNCATED', `option ${code} at offset ${at} has no length byte`, at);
    const len = buf[p++] as number;
    if (len > to - p) throw new ProtocolError('ERR_DHCP_OPTION_TRUNCATED', `option ${code} at offset ${at} claims ${len} bytes, ${to - p} remain`, p);
    const value = Buffer.from(buf.buffer, buf.byteOffset + p, len);
    p += len;
    const first = into.get(code);
    if (first === undefined) into.set(code, value);
    else {
      const list = repeats.get(code);
      if (list) list.push(value);
      else repeats.set(code, [first, value]);
    }
  }
}

/** Writes options as code/length/value, splitting values over 255 bytes into instances (RFC 3396 §6). */
export function writeOptions(options: DhcpOptions, out: Buffer, at: number): number {
  let p = at;
  for (const [code, value] of options) {
    if (code === OPTION.PAD || code === OPTION.END) continue;
    if (value.length <= 255) {
      // One instance (nearly every option): copied whole, no view made.
      out[p++] = code;
      out[p++] = value.length;
      out.set(value, p);
      p += value.length;
      continue;
    }
    for (let from = 0; from < value.length; from += 255) {
      const chunk = value.subarray(from, Math.min(from + 255, value.length));
      out[p++] = code;
      out[p++] = chunk.length;
      out.set(chunk, p);
      p += chunk.length;
    }
  }
  return p - at;
}

/** Bytes `writeOptions` will use. */
export function optionsLength(options: DhcpOptions): number {
  let n = 0;
  for (const [code, value] of options) {
    if (code === OPTION.PAD || code === OPTION.END) continue;
    n += value.length === 0 ? 2 : value.length + 2 * Math.ceil(value.length / 255);
  }
  return n;
}

// ── Typed getters (each cites the rule for its length) ───────────────────────────────────────

function lengthError(code: number, len: number, rule: string): ProtocolError {
  return new ProtocolError('ERR_DHCP_OPTION_LENGTH', `option ${code} (${optionName(code)}) has ${len} bytes; ${rule}`);
}

/** RFC 2132 §9.6: exactly one octet, 1–8. Null when absent (a plain BOOTP message). */
export function getMessageType(o: DhcpOptions): MessageTypeName | null {
  const v = o.get(OPTION.MESSAGE_TYPE);
  if (!v) return null;
  if (v.length !== 1) throw lengthError(OPTION.MESSAGE_TYPE, v.length, 'it must be 1');
  const name = MESSAGE_TYPE_NAMES[(v[0] as number) - 1];
  if (!name) throw new ProtocolError('ERR_DHCP_OPTION_VALUE', `option 53 (message-type) has value ${v[0]}; RFC 2132 §9.6 allows 1–8`);
  return name;
}

/** A single IPv4 address (subnet mask §3.3, requested IP §9.1, server identifier §9.7). */
export function getIp(o: DhcpOptions, code: number): IPv4 | null {
  const v = o.get(code);
  if (!v) return null;
  if (v.length !== 4) throw lengthError(code, v.length, 'an address option is exactly 4 bytes');
  return ipFromBytes(v);
}

/** A list of IPv4 addresses (router §3.5, DNS §3.8): a non-empty multiple of 4 bytes. */
export function getIpList(o: DhcpOptions, code: number): IPv4[] | null {
  const v = o.get(code);
  if (!v) return null;
  if (v.length === 0 || v.length % 4 !== 0) throw lengthError(code, v.length, 'an address list is a non-empty multiple of 4 bytes');
  const out: IPv4[] = [];
  for (let i = 0; i < v.length; i += 4) out.push(ipFromBytes(v, i));
  return out;
}

/** A 32-bit unsigned value (lease time §9.2, T1 §9.11, T2 §9.12). */
export function getUint32(o: DhcpOptions, code: number): number | null {
  const v = o.get(code);
  if (!v) return null;
  if (v.length !== 4) throw lengthError(code, v.length, 'it must be 4');
  return v.readUInt32BE(0);
}

/** RFC 2132 §9.10: maximum DHCP message size, 2 bytes, at least 576. */
export function getMaxMessageSize(o: DhcpOptions): number | null {
  const v = o.get(OPTION.MAX_MESSAGE_SIZE);
  if (!v) return null;
  if (v.length !== 2) throw lengthError(OPTION.MAX_MESSAGE_SIZE, v.length, 'it must be 2');
  return v.readUInt16BE(0);
}

/** RFC 2132 §9.3: overload, one octet: 1 = file, 2 = sname, 3 = both. */
export function getOverload(o: DhcpOptions): 1 | 2 | 3 | null {
  const v = o.get(OPTION.OVERLOAD);
  if (!v) return null;
  if (v.length !== 1) throw new ProtocolError('ERR_DHCP_OVERLOAD', `option 52 (overload) has ${v.length} bytes; RFC 2132 §9.3 says 1`);
  const n = v[0] as number;
  if (n < 1 || n > 3) throw new ProtocolError('ERR_DHCP_OVERLOAD', `option 52 (overload) has value ${n}; RFC 2132 §9.3 allows 1, 2 or 3`);
  return n as 1 | 2 | 3;
}

/**
 * NVT ASCII text (host name §3.14, vendor class §9.13, bootfile §9.5). RFC 2132 §2: receivers
 * must delete trailing NULs and must not require them. Bytes are read as latin1 so that no
 * byte is lost or replaced.
 */
export function getString(o: DhcpOptions, code: number): string | null {
  const v = o.get(code);
  if (!v) return null;
  let end = v.length;
  while (end > 0 && v[end - 1] === 0) end--;
  return v.toString('latin1', 0, end);
}

/**
 * RFC 2132 §9.8: the parameter request list, one code per byte, at least one. Returned as the
 * option's bytes (no copy): `includes(code)` is all a server asks of it.
 */
export function getParameterList(o: DhcpOptions): Uint8Array | null {
  const v = o.get(OPTION.PARAMETER_LIST);
  if (!v) return null;
  if (v.length === 0) throw lengthError(OPTION.PARAMETER_LIST, 0, 'RFC 2132 §9.8 requires at least 1');
  return v;
}

/** RFC 4578 §2.1: client system architecture, a non-empty list of 16-bit types. */
export function getClientArch(o: DhcpOptions): number[] | null {
  const v = o.get(OPTION.CLIENT_ARCH);
  if (!v) return null;
  if (v.length === 0 || v.length % 2 !== 0) throw lengthError(OPTION.CLIENT_ARCH, v.length, 'RFC 4578 §2.1 requires a non-empty multiple of 2');
  const out: number[] = [];
  for (let i = 0; i < v.length; i += 2) out.push(v.readUInt16BE(i));
  return out;
}

/** RFC 4578 §2.2: network interface identifier: type 1 (UNDI), major, minor. */
export function getClientNdi(o: DhcpOptions): { type: number; major: number; minor: number } | null {
  const v = o.get(OPTION.CLIENT_NDI);
  if (!v) return null;
  if (v.length !== 3) throw lengthError(OPTION.CLIENT_NDI, v.length, 'RFC 4578 §2.2 says 3');
  return { type: v[0] as number, major: v[1] as number, minor: v[2] as number };
}

/**
 * RFC 4578 §2.3: client machine identifier, type 0 then a 16-byte GUID. Returned raw (17 bytes),
 * because servers echo it as received (PXE spec 2.1 §2.5).
 */
export function getClientGuid(o: DhcpOptions): Buffer | null {
  const v = o.get(OPTION.CLIENT_GUID);
  if (!v) return null;
  if (v.length !== 17) throw lengthError(OPTION.CLIENT_GUID, v.length, 'RFC 4578 §2.3 says 17 (type 0 + 16-byte GUID)');
  if (v[0] !== 0) throw new ProtocolError('ERR_DHCP_OPTION_VALUE', `option 97 (client-guid) has type ${v[0]}; RFC 4578 §2.3 defines only type 0`);
  return v;
}

/** The GUID of option 97 as the SMBIOS UUID text firmware setup screens show (mixed-endian). */
export function guidToUuid(raw: Buffer): string {
  const g = raw.subarray(1);
  const hex = (b: Buffer): string => b.toString('hex');
  const le = (from: number, to: number): string => hex(Buffer.from(g.subarray(from, to)).reverse());
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${hex(g.subarray(8, 10))}-${hex(g.subarray(10, 16))}`;
}

/**
 * User class (option 77). RFC 3004 §4 encodes a list of length-prefixed strings; iPXE and many
 * firmwares send one bare string instead (`iPXE`). A value that parses exactly as an RFC 3004
 * list is returned as that list, anything else as one string.
 */
export function getUserClasses(o: DhcpOptions): readonly string[] | null {
  const v = o.get(OPTION.USER_CLASS);
  if (!v) return null;
  const list: string[] = [];
  let p = 0;
  while (p < v.length) {
    const len = v[p] as number;
    if (len === 0 || p + 1 + len > v.length) return [v.toString('latin1')];
    list.push(v.toString('latin1', p + 1, p + 1 + len));
    p += 1 + len;
  }
  return list.length > 0 ? list : [v.toString('latin1')];
}

/**
 * Encapsulated sub-options (43 vendor, 82 relay agent, 175 iPXE): code/length/value like the
 * outer options, PAD and END included (RFC 2132 §8.4). Sub-options keep the last instance.
 */
export function decodeSubOptions(value: Uint8Array): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let p = 0;
  while (p < value.length) {
    const code = value[p] as number;
    if (code === 0) {
      p++;
      continue;
    }
    if (code === 255) break;
    const len = value[p + 1];
    if (len === undefined || p + 2 + len > value.length) {
      throw new ProtocolError('ERR_DHCP_SUBOPTION_TRUNCATED', `sub-option ${code} at byte ${p} of its parent claims ${len ?? '?'} bytes, ${Math.max(0, value.length - p - 2)} remain`);
    }
    out.set(code, Buffer.from(value.subarray(p + 2, p + 2 + len)));
    p += 2 + len;
  }
  return out;
}

// ── Constructors ─────────────────────────────────────────────────────────────────────────────

export function ipOption(ip: string): Buffer {
  return ipToBytes(ip);
}

const serverIdValues = new Map<string, Buffer>();

/**
 * Option 54's value for one of our own addresses: there are only a few (one per served
 * interface), and every reply carries one, so each is encoded once and shared (encoding copies).
 */
export function serverIdOption(ip: string): Buffer {
  let value = serverIdValues.get(ip);
  if (value === undefined) {
    value = ipToBytes(ip);
    // Bounded however addresses come and go (a re-addressed interface adds one).
    if (serverIdValues.size >= 64) serverIdValues.clear();
    serverIdValues.set(ip, value);
  }
  return value;
}

export function ipListOption(ips: readonly string[]): Buffer {
  return Buffer.concat(ips.map((ip) => ipToBytes(ip)));
}

export function uint32Option(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

export function uint8Option(n: number): Buffer {
  return Buffer.from([n & 255]);
}

export function stringOption(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

/** One shared value per message type (every reply carries one; encoding only copies it). */
const MESSAGE_TYPE_VALUES: readonly Buffer[] = MESSAGE_TYPE_NAMES.map((_, i) => uint8Option(i + 1));

export function messageTypeOption(name: MessageTypeName): Buffer {
  return MESSAGE_TYPE_VALUES[messageTypeCode(name) - 1] as Buffer;
}

/** Encodes sub-options for an encapsulating option (43, 175); each value must fit 255 bytes. */
export function subOptionsValue(subs: ReadonlyMap<number, Uint8Array>): Buffer {
  const parts: Buffer[] = [];
  for (const [code, value] of subs) {
    if (value.length > 255) throw new ProtocolError('ERR_DHCP_ENCODE', `sub-option ${code} is ${value.length} bytes; at most 255 fit`);
    parts.push(Buffer.from([code, value.length]), Buffer.from(value));
  }
  return Buffer.concat(parts);
}
