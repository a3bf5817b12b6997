import { ipToInt, type IPv4 } from '../lib/ipv4.js';
import { macFromBytes, type Mac } from '../lib/mac.js';
import { Cursor } from './cursor.js';
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
  const c = new Cursor(buf);
  const opByte = c.u8('op');
  if (opByte !== 1 && opByte !== 2) throw new ProtocolError('ERR_DHCP_OP', `op at offset 0 is ${opByte}; RFC 2131 §2 allows 1 (BOOTREQUEST) or 2 (BOOTREPLY)`, 0);
  const htype = c.u8('htype');
  const hlen = c.u8('hlen');
  if (hlen > 16) throw new ProtocolError('ERR_DHCP_HLEN', `hlen at offset 2 is ${hlen}; chaddr holds at most 16 bytes`, 2);
  const hops = c.u8('hops');
  const xid = c.u32('xid');
  const secs = c.u16('secs');
  const flags = c.u16('flags');
  const ciaddr = c.ip('ciaddr');
  const yiaddr = c.ip('yiaddr');
  const siaddr = c.ip('siaddr');
  const giaddr = c.ip('giaddr');
  const chaddr = Buffer.from(c.bytes(16, 'chaddr'));
  const snameField = c.bytes(SNAME.size, 'sname');
  const fileField = c.bytes(FILE.size, 'file');
  const cookie = c.u32('magic cookie');
  if (cookie !== MAGIC_COOKIE) {
    throw new ProtocolError('ERR_DHCP_COOKIE', `magic cookie at offset ${HEADER_LENGTH} is 0x${cookie.toString(16).padStart(8, '0')}, expected 0x63825363`, HEADER_LENGTH);
  }

  const parts = new Map<number, Uint8Array[]>();
  readOptionArea(buf.subarray(HEADER_LENGTH + 4), HEADER_LENGTH + 4, parts);
  const overload = parts.has(OPTION.OVERLOAD) ? getOverload(concatenate(parts)) : null;
  // RFC 2131 §4.1 and RFC 3396 §7: the options field first, then `file`, then `sname`.
  if (overload === 1 || overload === 3) readOverloaded(fileField, FILE.at, 'file', parts);
  if (overload === 2 || overload === 3) readOverloaded(snameField, SNAME.at, 'sname', parts);

  return {
    op: opByte === 1 ? 'BOOTREQUEST' : 'BOOTREPLY',
    htype,
    hlen,
    hops,
    xid,
    secs,
    flags,
    ciaddr,
    yiaddr,
    siaddr,
    giaddr,
    chaddr,
    sname: overload === 2 || overload === 3 ? '' : cString(snameField),
    file: overload === 1 || overload === 3 ? '' : cString(fileField),
    options: concatenate(parts),
  };
}

function readOverloaded(field: Uint8Array, at: number, name: string, parts: Map<number, Uint8Array[]>): void {
  const before = parts.get(OPTION.OVERLOAD)?.length ?? 0;
  readOptionArea(field, at, parts);
  if ((parts.get(OPTION.OVERLOAD)?.length ?? 0) !== before) {
    throw new ProtocolError('ERR_DHCP_OVERLOAD', `option 52 (overload) appears inside the ${name} field; RFC 2131 §4.1 allows it only in the options field`, at);
  }
}

function concatenate(parts: Map<number, Uint8Array[]>): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  // Views into the datagram (no copy): each received datagram is a buffer of its own.
  for (const [code, list] of parts) out.set(code, list.length === 1 ? view(list[0] as Uint8Array) : Buffer.concat(list));
  return out;
}

function view(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.length);
}

function cString(field: Uint8Array): string {
  const nul = field.indexOf(0);
  return Buffer.from(field.buffer, field.byteOffset, nul === -1 ? field.length : nul).toString('latin1');
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
  out.writeUInt32BE(ipToInt(p.ciaddr), 12);
  out.writeUInt32BE(ipToInt(p.yiaddr), 16);
  out.writeUInt32BE(ipToInt(p.siaddr), 20);
  out.writeUInt32BE(ipToInt(p.giaddr), 24);
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
  const bytes = Buffer.from(text, 'latin1');
  if (bytes.length > size) throw new ProtocolError('ERR_DHCP_ENCODE', `${name} is ${bytes.length} bytes; the field holds ${size}`);
  bytes.copy(out, at);
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
