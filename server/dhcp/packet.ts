import { ipFromBytes, ipToInt, type IPv4 } from '../lib/ipv4.js';
import { macFromBytes, type Mac } from '../lib/mac.js';
import { ProtocolError } from './errors.js';
import { OPTION, getOverload, optionsLength, readOptionArea, writeOptions, type DhcpOptions } from './options.js';

/**
 * The DHCPv4 message (RFC 2131 §2, figure 1), pure encode/decode:
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +---------------+---------------+---------------+---------------+
 *   |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |   0
 *   +---------------+---------------+---------------+---------------+
 *   |                            xid (4)                            |   4
 *   +-------------------------------+-------------------------------+
 *   |           secs (2)            |           flags (2)           |   8
 *   +-------------------------------+-------------------------------+
 *   |                          ciaddr  (4)                          |  12
 *   |                          yiaddr  (4)                          |  16
 *   |                          siaddr  (4)                          |  20
 *   |                          giaddr  (4)                          |  24
 *   +---------------------------------------------------------------+
 *   |                          chaddr  (16)                         |  28
 *   |                          sname   (64)                         |  44
 *   |                          file    (128)                        | 108
 *   +---------------------------------------------------------------+
 *   |                 magic cookie 99.130.83.99 (4)                 | 236
 *   |                          options (variable, ends with END)    | 240
 *   +---------------------------------------------------------------+
 */

export type BootOp = 'BOOTREQUEST' | 'BOOTREPLY';

export interface DhcpPacket {
  readonly op: BootOp;
  /** Hardware type (1 = Ethernet). */
  readonly htype: number;
  /** Hardware address length (6 for Ethernet), at most 16. */
  readonly hlen: number;
  readonly hops: number;
  readonly xid: number;
  readonly secs: number;
  /** Bit 15 is BROADCAST (RFC 2131 §2, figure 2); the rest must be zero. */
  readonly flags: number;
  readonly ciaddr: IPv4;
  readonly yiaddr: IPv4;
  readonly siaddr: IPv4;
  readonly giaddr: IPv4;
  /** All 16 bytes of the field, as received (only the first `hlen` are the address). */
  readonly chaddr: Buffer;
  /** Server host name; empty when the field carries overloaded options. */
  readonly sname: string;
  /** Boot file name; empty when the field carries overloaded options. */
  readonly file: string;
  readonly options: DhcpOptions;
}

export const HEADER_LENGTH = 236;
export const MAGIC_COOKIE = 0x63825363;
export const BROADCAST_FLAG = 0x8000;
/**
 * Replies are padded to the 300 bytes of a BOOTP message (RFC 951 §3: 64-byte `vend` field);
 * relay agents such as ISC dhcrelay discard anything shorter (BOOTP_MIN_LEN).
 */
export const MIN_REPLY_LENGTH = 300;
/** RFC 2131 §2: every DHCP participant must accept 576-byte IP datagrams; minus IP and UDP headers. */
export const DEFAULT_MAX_MESSAGE = 576 - 20 - 8;

const ZERO_IP = '0.0.0.0' as IPv4;
export { ZERO_IP };

const SNAME = { at: 44, size: 64 } as const;
const FILE = { at: 108, size: 128 } as const;

export function decodeDhcp(buf: Uint8Array): DhcpPacket {
  if (buf.length < HEADER_LENGTH + 4) {
    throw new ProtocolError('ERR_DHCP_SHORT', `a DHCP message needs at least ${HEADER_LENGTH + 4} bytes (header and magic cookie), got ${buf.length}`, 0);
  }
  // The fixed header is read in place: its length was checked once above, so no field can fall
  // short (the options are read with bounds checks, by `readOptionArea`).
  const opByte = buf[0] as number;
  if (opByte !== 1 && opByte !== 2) throw new ProtocolError('ERR_DHCP_OP', `op at offset 0 is ${opByte}; RFC 2131 §2 allows 1 (BOOTREQUEST) or 2 (BOOTREPLY)`, 0);
  const hlen = buf[2] as number;
  if (hlen > 16) throw new ProtocolError('ERR_DHCP_HLEN', `hlen at offset 2 is ${hlen}; chaddr holds at most 16 bytes`, 2);
  const cookie = u32(buf, HEADER_LENGTH);
  if (cookie !== MAGIC_COOKIE) {
    throw new ProtocolError('ERR_DHCP_COOKIE', `magic cookie at offset ${HEADER_LENGTH} is 0x${cookie.toString(16).padStart(8, '0')}, expected 0x63825363`, HEADER_LENGTH);
  }

  const options = new Map<number, Buffer>();
  // Repeated codes only (rare): their instances, concatenated once at the end (RFC 3396 §7).
  const repeats = new Map<number, Uint8Array[]>();
  readOptionArea(buf, HEADER_LENGTH + 4, buf.length, options, repeats, null);
  const overload = options.has(OPTION.OVERLOAD) ? getOverload(joinRepeats(options, repeats)) : null;
  // RFC 2131 §4.1 and RFC 3396 §7: the options field first, then `file`, then `sname`.
  if (overload === 1 || overload === 3) readOptionArea(buf, FILE.at, FILE.at + FILE.size, options, repeats, 'file');
  if (overload === 2 || overload === 3) readOptionArea(buf, SNAME.at, SNAME.at + SNAME.size, options, repeats, 'sname');

  return {
    op: opByte === 1 ? 'BOOTREQUEST' : 'BOOTREPLY',
    htype: buf[1] as number,
    hlen,
    hops: buf[3] as number,
    xid: u32(buf, 4),
    secs: ((buf[8] as number) << 8) | (buf[9] as number),
    flags: ((buf[10] as number) << 8) | (buf[11] as number),
    ciaddr: ipAt(buf, 12),
    yiaddr: ipAt(buf, 16),
    siaddr: ipAt(buf, 20),
    giaddr: ipAt(buf, 24),
    // Views into the datagram (no copy): each received datagram is a buffer of its own.
    chaddr: view(buf, 28, 16),
    sname: overload === 2 || overload === 3 ? '' : cString(buf, SNAME.at, SNAME.size),
    file: overload === 1 || overload === 3 ? '' : cString(buf, FILE.at, FILE.size),
    options: repeats.size === 0 ? options : joinRepeats(options, repeats),
  };
}

function u32(b: Uint8Array, at: number): number {
  return (((b[at] as number) << 24) | ((b[at + 1] as number) << 16) | ((b[at + 2] as number) << 8) | (b[at + 3] as number)) >>> 0;
}

/** An address field; the all-zero one (most of them, in requests) without building a string. */
function ipAt(b: Uint8Array, at: number): IPv4 {
  return u32(b, at) === 0 ? ZERO_IP : ipFromBytes(b, at);
}

/** The options with each repeated code's instances concatenated, in the order they came. */
function joinRepeats(options: Map<number, Buffer>, repeats: ReadonlyMap<number, Uint8Array[]>): Map<number, Buffer> {
  for (const [code, list] of repeats) options.set(code, Buffer.concat(list));
  return options;
}

function view(u: Uint8Array, at: number, length: number): Buffer {
  return Buffer.from(u.buffer, u.byteOffset + at, length);
}

function cString(buf: Uint8Array, at: number, size: number): string {
  // Most requests leave the field empty: no view, no string to build.
  if (buf[at] === 0) return '';
  const field = buf.subarray(at, at + size);
  const nul = field.indexOf(0);
  return Buffer.from(field.buffer, field.byteOffset, nul === -1 ? size : nul).toString('latin1');
}

/** Bytes `encodeDhcp` will produce (before padding to the minimum). */
export function encodingLength(p: DhcpPacket): number {
  return HEADER_LENGTH + 4 + optionsLength(p.options) + 1;
}

export interface EncodeOptions {
  /** Pad with zeros up to this size (default: 300, the BOOTP minimum). */
  readonly minLength?: number;
}

export function encodeDhcp(p: DhcpPacket, opts: EncodeOptions = {}): Buffer {
  const length = Math.max(encodingLength(p), opts.minLength ?? MIN_REPLY_LENGTH);
  // From the shared pool (Buffer.alloc would allocate a backing store per reply), zeroed here.
  const out = Buffer.allocUnsafe(length).fill(0);
  if (p.hlen > 16) throw new ProtocolError('ERR_DHCP_ENCODE', `hlen ${p.hlen} does not fit the 16-byte chaddr field`);
  if (p.chaddr.length > 16) throw new ProtocolError('ERR_DHCP_ENCODE', `chaddr is ${p.chaddr.length} bytes; the field holds 16`);
  out[0] = p.op === 'BOOTREQUEST' ? 1 : 2;
  out[1] = p.htype;
  out[2] = p.hlen;
  out[3] = p.hops;
  out.writeUInt32BE(p.xid >>> 0, 4);
  out.writeUInt16BE(p.secs & 0xffff, 8);
  out.writeUInt16BE(p.flags & 0xffff, 10);
  // Zero addresses are left as the zeroed buffer has them.
  if (p.ciaddr !== ZERO_IP) out.writeUInt32BE(ipToInt(p.ciaddr), 12);
  if (p.yiaddr !== ZERO_IP) out.writeUInt32BE(ipToInt(p.yiaddr), 16);
  if (p.siaddr !== ZERO_IP) out.writeUInt32BE(ipToInt(p.siaddr), 20);
  if (p.giaddr !== ZERO_IP) out.writeUInt32BE(ipToInt(p.giaddr), 24);
  p.chaddr.copy(out, 28);
  writeField(out, p.sname, SNAME.at, SNAME.size, 'sname');
  writeField(out, p.file, FILE.at, FILE.size, 'file');
  out.writeUInt32BE(MAGIC_COOKIE, HEADER_LENGTH);
  const n = writeOptions(p.options, out, HEADER_LENGTH + 4);
  out[HEADER_LENGTH + 4 + n] = OPTION.END;
  // The rest is already zero: PAD octets after END (RFC 2132 §3.2).
  return out;
}

function writeField(out: Buffer, text: string, at: number, size: number, name: string): void {
  if (text === '') return;
  // latin1: one byte per character.
  if (text.length > size) throw new ProtocolError('ERR_DHCP_ENCODE', `${name} is ${text.length} bytes; the field holds ${size}`);
  out.write(text, at, size, 'latin1');
}

/** The client's MAC when chaddr is an Ethernet address (htype 1, hlen 6), else null. */
export function clientMac(p: DhcpPacket): Mac | null {
  return p.htype === 1 && p.hlen === 6 ? macFromBytes(p.chaddr) : null;
}

export function isBroadcast(p: DhcpPacket): boolean {
  return (p.flags & BROADCAST_FLAG) !== 0;
}

/** The shape every codec shares, so one round-trip helper covers them all. */
export const dhcpCodec = { encode: encodeDhcp, decode: decodeDhcp, encodingLength } as const;
