/**
 * Just enough ISO 9660 (ECMA-119) to find a file in an installer ISO: the primary volume
 * descriptor and directory records, with Rock Ridge names (SUSP "NM" entries, IEEE P1282) when
 * present. Pure: callers hand in sectors, get back records. Every read is bounds-checked and a
 * malformed image throws an IsoError with a code saying what and where.
 *
 *   volume descriptor (sector 16 on): type u8 | "CD001" | version u8 | …
 *     PVD: logical block size both-endian u16 at 128, root directory record (34 bytes) at 156
 *   directory record:
 *     0 length u8 | 1 ext. attr length u8 | 2 extent LBA u32 LE (+BE) | 10 data length u32 LE (+BE)
 *     18 date (7) | 25 flags u8 (bit 1: directory) | 26 unit size | 27 gap | 28 volume seq (4)
 *     32 name length u8 | 33 name | pad to even | system use (SUSP entries)
 */
export const SECTOR = 2048;
export const PVD_SECTOR = 16;

export class IsoError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'IsoError';
    this.code = code;
  }
}

export interface IsoRecord {
  /** Rock Ridge name when present, else the ISO name without `;1` and a trailing dot. */
  readonly name: string;
  readonly lba: number;
  readonly size: number;
  readonly directory: boolean;
}

export interface IsoVolume {
  readonly blockSize: number;
  readonly root: IsoRecord;
}

function need(buf: Uint8Array, offset: number, length: number, what: string): void {
  if (offset < 0 || offset + length > buf.length) {
    throw new IsoError('ERR_ISO_SHORT', `${what} needs ${length} bytes at offset ${offset}, ${Math.max(0, buf.length - offset)} remain`);
  }
}

function u32le(buf: Uint8Array, offset: number): number {
  return ((buf[offset] as number) | ((buf[offset + 1] as number) << 8) | ((buf[offset + 2] as number) << 16) | ((buf[offset + 3] as number) << 24)) >>> 0;
}

/** Decodes the primary volume descriptor from the 2048 bytes of one descriptor sector. */
export function decodePrimaryVolume(sector: Uint8Array): IsoVolume {
  need(sector, 0, 190, 'the primary volume descriptor');
  const magic = String.fromCharCode(...sector.subarray(1, 6));
  if (magic !== 'CD001') throw new IsoError('ERR_ISO_MAGIC', `sector ${PVD_SECTOR} is not an ISO 9660 volume descriptor (magic "${magic}")`);
  if (sector[0] !== 1) throw new IsoError('ERR_ISO_NO_PVD', `the first volume descriptor has type ${sector[0]}, not 1 (primary)`);
  const blockSize = (sector[128] as number) | ((sector[129] as number) << 8);
  if (blockSize !== 2048 && blockSize !== 1024 && blockSize !== 512) throw new IsoError('ERR_ISO_BLOCK', `logical block size ${blockSize} is not 512, 1024 or 2048`);
  const root = decodeRecord(sector, 156);
  if (!root || !root.record.directory) throw new IsoError('ERR_ISO_ROOT', 'the root directory record is missing or not a directory');
  return { blockSize, root: { ...root.record, name: '' } };
}

/** Rock Ridge `NM` (alternate name) from a record's system use area, if any. */
function rockRidgeName(area: Uint8Array): string | null {
  let off = 0;
  let name = '';
  let found = false;
  while (off + 4 <= area.length) {
    const sig = String.fromCharCode(area[off] as number, area[off + 1] as number);
    const len = area[off + 2] as number;
    if (len < 4 || off + len > area.length) break;
    if (sig === 'NM' && len >= 5) {
      const flags = area[off + 4] as number;
      // Flags 2/4 mean "." / ".."; 1 means the name continues in the next NM entry.
      if ((flags & 0x06) === 0) {
        name += Buffer.from(area.subarray(off + 5, off + len)).toString('utf8');
        found = true;
      }
    }
    if (sig === 'ST') break;
    off += len;
  }
  return found ? name : null;
}

/** Decodes one directory record at `offset`; null for a zero length byte (sector padding). */
export function decodeRecord(buf: Uint8Array, offset: number): { record: IsoRecord; length: number } | null {
  need(buf, offset, 1, 'a directory record length');
  const length = buf[offset] as number;
  if (length === 0) return null;
  if (length < 34) throw new IsoError('ERR_ISO_RECORD', `directory record at offset ${offset} claims ${length} bytes, less than the 34-byte minimum`);
  need(buf, offset, length, `the directory record at offset ${offset}`);
  const nameLength = buf[offset + 32] as number;
  if (33 + nameLength > length) throw new IsoError('ERR_ISO_RECORD', `directory record at offset ${offset}: name of ${nameLength} bytes overruns the record of ${length}`);
  const raw = buf.subarray(offset + 33, offset + 33 + nameLength);
  const suStart = 33 + nameLength + (nameLength % 2 === 0 ? 1 : 0);
  const rr = suStart < length ? rockRidgeName(buf.subarray(offset + suStart, offset + length)) : null;
  let name: string;
  if (nameLength === 1 && (raw[0] === 0 || raw[0] === 1)) name = raw[0] === 0 ? '.' : '..';
  else name = rr ?? Buffer.from(raw).toString('latin1').replace(/;\d+$/, '').replace(/\.$/, '');
  return {
    record: { name, lba: u32le(buf, offset + 2), size: u32le(buf, offset + 10), directory: ((buf[offset + 25] as number) & 0x02) !== 0 },
    length,
  };
}

/** All records of a directory's extent (records never cross a sector boundary: ECMA-119 6.8.1.1). */
export function decodeDirectory(extent: Uint8Array): IsoRecord[] {
  const out: IsoRecord[] = [];
  let off = 0;
  while (off < extent.length) {
    const r = decodeRecord(extent, off);
    if (r === null) {
      off = (Math.floor(off / SECTOR) + 1) * SECTOR;
      continue;
    }
    if (r.record.name !== '.' && r.record.name !== '..') out.push(r.record);
    off += r.length;
  }
  return out;
}

/** Finds a name in a directory: exact Rock Ridge name first, else a case-insensitive ISO name. */
export function findEntry(entries: readonly IsoRecord[], name: string): IsoRecord | null {
  return entries.find((e) => e.name === name) ?? entries.find((e) => e.name.toLowerCase() === name.toLowerCase()) ?? null;
}
