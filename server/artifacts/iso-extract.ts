import { open } from 'node:fs/promises';
import { decodeDirectory, decodePrimaryVolume, findEntry, IsoError, PVD_SECTOR, SECTOR, type IsoRecord } from './iso9660.js';

/** A directory bigger than this is not an installer ISO's: refuse rather than read it into memory. */
const MAX_DIRECTORY = 16 * 1024 * 1024;

/** Where `path` (e.g. `casper/vmlinuz`) lies inside the ISO file: byte offset and length. */
export async function locateInIso(isoPath: string, path: string): Promise<{ offset: number; size: number }> {
  const fh = await open(isoPath, 'r');
  try {
    const read = async (offset: number, length: number): Promise<Uint8Array> => {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    };
    const vol = decodePrimaryVolume(await read(PVD_SECTOR * SECTOR, SECTOR));
    let cur: IsoRecord = vol.root;
    const parts = path.split('/').filter(Boolean);
    for (const [i, part] of parts.entries()) {
      if (!cur.directory) throw new IsoError('ERR_ISO_NOT_DIR', `${parts.slice(0, i).join('/')} is not a directory in the ISO`);
      if (cur.size > MAX_DIRECTORY) throw new IsoError('ERR_ISO_DIR_SIZE', `directory ${parts.slice(0, i).join('/') || '/'} claims ${cur.size} bytes`);
      const entries = decodeDirectory(await read(cur.lba * vol.blockSize, cur.size));
      const next = findEntry(entries, part);
      if (!next) throw new IsoError('ERR_ISO_NOT_FOUND', `no ${parts.slice(0, i + 1).join('/')} in the ISO`);
      cur = next;
    }
    if (cur.directory) throw new IsoError('ERR_ISO_IS_DIR', `${path} is a directory in the ISO`);
    const offset = cur.lba * vol.blockSize;
    const { size } = await fh.stat();
    if (offset + cur.size > size) throw new IsoError('ERR_ISO_SHORT', `${path} claims bytes ${offset}–${offset + cur.size} but the ISO has ${size}`);
    return { offset, size: cur.size };
  } finally {
    await fh.close();
  }
}
