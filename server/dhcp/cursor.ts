import { ipFromBytes, type IPv4 } from '../lib/ipv4.js';
import { ProtocolError, type DhcpErrorCode } from './errors.js';

/**
 * A bounds-checked reader over one area of a datagram. Every read names what it is reading so
 * that a short packet fails with "chaddr at offset 28 needs 16 bytes, 3 remain" rather than a
 * RangeError from deep inside Buffer. `base` is the area's offset in the whole datagram, so that
 * messages point at the real byte even when the area is `file` or `sname`.
 */
export class Cursor {
  private pos = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly base = 0,
    private readonly shortCode: DhcpErrorCode = 'ERR_DHCP_SHORT',
  ) {}

  get offset(): number {
    return this.base + this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  private need(n: number, what: string): void {
    if (n > this.remaining) {
      throw new ProtocolError(this.shortCode, `${what} at offset ${this.offset} needs ${n} byte${n === 1 ? '' : 's'}, ${this.remaining} remain`, this.offset);
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++] as number;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = ((this.buf[this.pos] as number) << 8) | (this.buf[this.pos + 1] as number);
    this.pos += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const b = this.buf;
    const p = this.pos;
    const v = (((b[p] as number) << 24) | ((b[p + 1] as number) << 16) | ((b[p + 2] as number) << 8) | (b[p + 3] as number)) >>> 0;
    this.pos += 4;
    return v;
  }

  /** The next 4 bytes as a dotted quad (read in place: no view is made). */
  ip(what: string): IPv4 {
    this.need(4, what);
    const out = ipFromBytes(this.buf, this.pos);
    this.pos += 4;
    return out;
  }

  /** A view (not a copy) of the next `n` bytes. */
  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Like `bytes`, but a short read is reported with `code` and a caller-made message. */
  take(n: number, code: DhcpErrorCode, message: () => string): Uint8Array {
    if (n > this.remaining) throw new ProtocolError(code, message(), this.offset);
    return this.bytes(n, '');
  }
}
