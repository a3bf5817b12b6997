/**
 * TFTP packets (RFC 1350, with RFC 2347 options and OACK). Pure: bytes in, plain objects out.
 *
 *   RRQ/WRQ  | 01/02 | filename | 0 | mode | 0 | name1 | 0 | value1 | 0 | ...     (RFC 1350 §5, RFC 2347)
 *   DATA     | 03 | block (2) | data (0..blksize)                                   (RFC 1350 §5)
 *   ACK      | 04 | block (2) |
 *   ERROR    | 05 | code (2) | message | 0 |
 *   OACK     | 06 | name1 | 0 | value1 | 0 | ...                                   (RFC 2347)
 *
 * Every read goes through a cursor that checks the length first; malformed input throws one
 * `TftpProtocolError` whose `code` says what kind of problem it was and whose message says where.
 */

export const OPCODES = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;
export type Opcode = keyof typeof OPCODES;

/** RFC 1350 §5 error codes, plus 8 from RFC 2347. */
export const TFTP_ERRORS = {
  notDefined: 0,
  fileNotFound: 1,
  accessViolation: 2,
  diskFull: 3,
  illegalOperation: 4,
  unknownTid: 5,
  fileExists: 6,
  noSuchUser: 7,
  optionRefused: 8,
} as const;
export type TftpErrorName = keyof typeof TFTP_ERRORS;

const ERROR_NAMES = new Map<number, TftpErrorName>(Object.entries(TFTP_ERRORS).map(([k, v]) => [v, k as TftpErrorName]));

export function tftpErrorName(code: number): string {
  return ERROR_NAMES.get(code) ?? `unknown (${code})`;
}

export function opcodeName(op: number): string {
  for (const [name, value] of Object.entries(OPCODES)) if (value === op) return name;
  return `unknown (${op})`;
}

/** RFC 1350 §5: "mail" is obsolete; it is decoded so that the request can be refused by name. */
export const MODES = ['netascii', 'octet', 'mail'] as const;
export type TransferMode = (typeof MODES)[number];

export interface TftpOption {
  /** As the client spelled it: RFC 2347 names are case-insensitive, and the OACK echoes the spelling. */
  readonly name: string;
  readonly value: string;
}

export interface RequestPacket {
  readonly op: 'RRQ' | 'WRQ';
  readonly filename: string;
  readonly mode: TransferMode;
  readonly options: readonly TftpOption[];
}

export type TftpPacket =
  | RequestPacket
  | { readonly op: 'DATA'; readonly block: number; readonly data: Buffer }
  | { readonly op: 'ACK'; readonly block: number }
  | { readonly op: 'ERROR'; readonly code: number; readonly message: string }
  | { readonly op: 'OACK'; readonly options: readonly TftpOption[] };

export type TftpProtocolErrorCode =
  | 'ERR_TFTP_SHORT'
  | 'ERR_TFTP_OPCODE'
  | 'ERR_TFTP_UNTERMINATED'
  | 'ERR_TFTP_MODE'
  | 'ERR_TFTP_FILENAME'
  | 'ERR_TFTP_OPTION'
  | 'ERR_TFTP_TRAILING';

export class TftpProtocolError extends Error {
  readonly code: TftpProtocolErrorCode;
  /** Byte offset where the problem was found. */
  readonly offset: number;
  constructor(code: TftpProtocolErrorCode, offset: number, message: string) {
    super(`${message} (at byte ${offset})`);
    this.name = 'TftpProtocolError';
    this.code = code;
    this.offset = offset;
  }
}

/** The largest block size RFC 2348 allows. */
export const MAX_BLKSIZE = 65464;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A bounds-checked reader over one datagram. */
class Cursor {
  offset = 0;
  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  u16(what: string): number {
    if (this.remaining < 2) throw new TftpProtocolError('ERR_TFTP_SHORT', this.offset, `${what} needs 2 bytes, ${this.remaining} remain`);
    const v = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  /** Bytes up to the next NUL (which is consumed). */
  cstring(what: string): Buffer {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new TftpProtocolError('ERR_TFTP_UNTERMINATED', this.offset, `${what} has no terminating NUL within the ${this.remaining} bytes left`);
    const bytes = this.buf.subarray(this.offset, end);
    this.offset = end + 1;
    return bytes;
  }

  rest(): Buffer {
    const bytes = this.buf.subarray(this.offset);
    this.offset = this.buf.length;
    return bytes;
  }

  /** True when every byte left is zero (or none is left). */
  onlyZerosLeft(): boolean {
    for (let i = this.offset; i < this.buf.length; i++) if (this.buf[i] !== 0) return false;
    return true;
  }
}

export function decodeTftp(buf: Buffer): TftpPacket {
  const c = new Cursor(buf);
  const op = c.u16('opcode');
  switch (op) {
    case OPCODES.RRQ:
    case OPCODES.WRQ:
      return decodeRequest(c, op === OPCODES.RRQ ? 'RRQ' : 'WRQ');
    case OPCODES.DATA: {
      const block = c.u16('DATA block number');
      return { op: 'DATA', block, data: c.rest() };
    }
    case OPCODES.ACK: {
      const block = c.u16('ACK block number');
      // Some PXE stacks pad short datagrams with zeros; anything else after the block is not an ACK.
      if (!c.onlyZerosLeft()) throw new TftpProtocolError('ERR_TFTP_TRAILING', c.offset, `ACK carries ${c.remaining} unexpected bytes after the block number`);
      return { op: 'ACK', block };
    }
    case OPCODES.ERROR: {
      const code = c.u16('ERROR code');
      // The text is informational and the transfer ends anyway: a missing final NUL (seen from
      // minimal clients) does not make the error unreadable.
      const bytes = c.remaining > 0 && buf.indexOf(0, c.offset) >= 0 ? c.cstring('ERROR message') : c.rest();
      return { op: 'ERROR', code, message: bytes.toString('latin1') };
    }
    case OPCODES.OACK:
      return { op: 'OACK', options: decodeOptions(c) };
    default:
      throw new TftpProtocolError('ERR_TFTP_OPCODE', 0, `unknown opcode ${op}`);
  }
}

function decodeRequest(c: Cursor, op: 'RRQ' | 'WRQ'): TftpPacket {
  const nameAt = c.offset;
  const raw = c.cstring(`${op} filename`);
  if (raw.length === 0) throw new TftpProtocolError('ERR_TFTP_FILENAME', nameAt, `${op} filename is empty`);
  let filename: string;
  try {
    filename = utf8.decode(raw);
  } catch {
    throw new TftpProtocolError('ERR_TFTP_FILENAME', nameAt, `${op} filename is not valid UTF-8`);
  }
  const modeAt = c.offset;
  const modeText = c.cstring(`${op} mode`).toString('latin1').toLowerCase();
  // RFC 1350 §5: the mode is matched case-insensitively.
  const mode = MODES.find((m) => m === modeText);
  if (!mode) throw new TftpProtocolError('ERR_TFTP_MODE', modeAt, `${op} mode ${JSON.stringify(modeText.slice(0, 32))} is not netascii, octet or mail`);
  return { op, filename, mode, options: decodeOptions(c) };
}

/** RFC 2347 name/value pairs up to the end of the datagram. */
function decodeOptions(c: Cursor): TftpOption[] {
  const options: TftpOption[] = [];
  while (c.remaining > 0) {
    // Some PXE ROMs pad requests to a minimum length with zeros after the last option.
    if (c.onlyZerosLeft()) break;
    const at = c.offset;
    const name = c.cstring('option name').toString('latin1');
    if (name.length === 0) throw new TftpProtocolError('ERR_TFTP_OPTION', at, 'an option name is empty but bytes follow it');
    if (c.remaining === 0) throw new TftpProtocolError('ERR_TFTP_OPTION', c.offset, `option ${JSON.stringify(name.slice(0, 32))} has no value`);
    const value = c.cstring(`value of option ${JSON.stringify(name.slice(0, 32))}`).toString('latin1');
    options.push({ name, value });
  }
  return options;
}

export function encodingLength(p: TftpPacket): number {
  switch (p.op) {
    case 'RRQ':
    case 'WRQ':
      return 2 + Buffer.byteLength(p.filename, 'utf8') + 1 + p.mode.length + 1 + optionsLength(p.options);
    case 'DATA':
      return 4 + p.data.length;
    case 'ACK':
      return 4;
    case 'ERROR':
      return 4 + Buffer.byteLength(p.message, 'latin1') + 1;
    case 'OACK':
      return 2 + optionsLength(p.options);
  }
}

function optionsLength(options: readonly TftpOption[]): number {
  let n = 0;
  for (const o of options) n += o.name.length + 1 + o.value.length + 1;
  return n;
}

function checkText(what: string, s: string): void {
  if (s.includes('\0')) throw new TypeError(`${what} must not contain NUL`);
}

export function encodeTftp(p: TftpPacket): Buffer {
  const buf = Buffer.alloc(encodingLength(p));
  let o = buf.writeUInt16BE(OPCODES[p.op], 0);
  const text = (what: string, s: string, enc: BufferEncoding): void => {
    checkText(what, s);
    o += buf.write(s, o, enc);
    buf[o++] = 0;
  };
  const options = (list: readonly TftpOption[]): void => {
    for (const opt of list) {
      text('option name', opt.name, 'latin1');
      text('option value', opt.value, 'latin1');
    }
  };
  switch (p.op) {
    case 'RRQ':
    case 'WRQ':
      text('filename', p.filename, 'utf8');
      text('mode', p.mode, 'latin1');
      options(p.options);
      break;
    case 'DATA':
      buf.writeUInt16BE(p.block & 0xffff, 2);
      p.data.copy(buf, 4);
      break;
    case 'ACK':
      buf.writeUInt16BE(p.block & 0xffff, 2);
      break;
    case 'ERROR':
      o = buf.writeUInt16BE(p.code & 0xffff, 2);
      text('error message', p.message, 'latin1');
      break;
    case 'OACK':
      options(p.options);
      break;
  }
  return buf;
}

/**
 * The 4-byte DATA header alone, for the send path that hands the kernel header and file bytes as
 * two pieces instead of copying each block into a new buffer.
 */
export function encodeDataHeader(block: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h[0] = 0;
  h[1] = OPCODES.DATA;
  h.writeUInt16BE(block & 0xffff, 2);
  return h;
}

/** Fast check used by the hot path: is this datagram an ACK, and for which block? */
export function ackBlock(buf: Buffer): number | null {
  if (buf.length !== 4 || buf[0] !== 0 || buf[1] !== OPCODES.ACK) return null;
  return buf.readUInt16BE(2);
}
