import { inflateSync } from 'node:zlib';

/**
 * Enough of PNG (RFC 2083 / ISO 15948) to check a screenshot is not blank: 8-bit truecolour with
 * or without alpha, non-interlaced, which is what Chromium writes. Returns the size and the
 * number of distinct colours.
 *
 *   signature(8) · chunks: length(4) type(4) data(length) crc(4) — IHDR first, IDATs, IEND
 *   each scanline: filter byte (0 none, 1 sub, 2 up, 3 average, 4 Paeth) + pixels
 */
export interface PngSummary {
  readonly width: number;
  readonly height: number;
  readonly colours: number;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function summarisePng(buf: Buffer, maxColours = 100_000): PngSummary {
  if (buf.length < 8 || !buf.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG: bad signature');
  let at = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (at + 8 <= buf.length) {
    const len = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    if (at + 12 + len > buf.length) throw new Error(`PNG chunk ${type} at ${at} claims ${len} bytes past the end`);
    const data = buf.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const depth = data[8];
      const colourType = data[9];
      if (depth !== 8 || (colourType !== 2 && colourType !== 6) || data[12] !== 0) throw new Error(`PNG: only 8-bit RGB/RGBA, non-interlaced (got depth ${depth}, type ${colourType})`);
      channels = colourType === 6 ? 4 : 3;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    at += 12 + len;
  }
  if (!width || !height || idat.length === 0) throw new Error('PNG: no IHDR or no image data');
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new Error('PNG: image data shorter than its size');
  const prev = Buffer.alloc(stride);
  const cur = Buffer.alloc(stride);
  const colours = new Set<number>();
  for (let y = 0; y < height; y++) {
    const row = raw.subarray(y * (stride + 1), (y + 1) * (stride + 1));
    const filter = row[0];
    for (let x = 0; x < stride; x++) {
      const v = row[x + 1] ?? 0;
      const a = x >= channels ? (cur[x - channels] ?? 0) : 0;
      const b = prev[x] ?? 0;
      const c = x >= channels ? (prev[x - channels] ?? 0) : 0;
      let out: number;
      switch (filter) {
        case 0: out = v; break;
        case 1: out = v + a; break;
        case 2: out = v + b; break;
        case 3: out = v + ((a + b) >> 1); break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          out = v + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default:
          throw new Error(`PNG: unknown filter ${filter} on row ${y}`);
      }
      cur[x] = out & 0xff;
    }
    if (colours.size < maxColours) {
      for (let x = 0; x < stride; x += channels) colours.add(((cur[x] ?? 0) << 16) | ((cur[x + 1] ?? 0) << 8) | (cur[x + 2] ?? 0));
    }
    cur.copy(prev);
  }
  return { width, height, colours: colours.size };
}
