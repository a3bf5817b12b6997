import { open as openHandle, type FileHandle } from 'node:fs/promises';
import { JailError, checkRequestPath, openResolved, resolveInside, type JailOptions } from './jail.js';

/**
 * Files that racksmith serves to machines (TFTP boot binaries, generated files; later HTTP
 * artifacts), behind one narrow interface. Three implementations: a jailed root directory, a
 * registry of generated in-memory files, and a layer that asks several sources in turn.
 */

export type FileErrorCode = 'ERR_FILE_NOT_FOUND' | 'ERR_FILE_DENIED' | 'ERR_FILE_UNREADABLE';

export class FileError extends Error {
  readonly code: FileErrorCode;
  /** The jail's finer reason (`ERR_JAIL_TRAVERSAL`…), when the jail refused. */
  readonly reason: string;
  constructor(code: FileErrorCode, reason: string, message: string) {
    super(message);
    this.name = 'FileError';
    this.code = code;
    this.reason = reason;
  }
}

export interface OpenedFile {
  readonly name: string;
  readonly size: number;
  /** The whole content when it is held in memory (small files, generated files), else null. */
  readonly bytes: Buffer | null;
  /** Reads `length` bytes at `position` (fewer only at the end of the file). */
  read(position: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/** Who asks for a file (a TFTP client's address), for sources whose answer depends on it. */
export interface FileClient {
  readonly address: string;
}

export interface FileSource {
  /** Opens a file by its client-supplied name; throws a FileError. */
  open(name: string, client?: FileClient): Promise<OpenedFile>;
}

export function memoryFile(name: string, bytes: Buffer): OpenedFile {
  return {
    name,
    size: bytes.length,
    bytes,
    async read(position, length) {
      return bytes.subarray(position, Math.min(bytes.length, position + length));
    },
    async close() {},
  };
}

function fromJail(err: unknown): never {
  if (err instanceof JailError) {
    const code: FileErrorCode = err.code === 'ERR_JAIL_NOT_FOUND' ? 'ERR_FILE_NOT_FOUND' : err.code === 'ERR_JAIL_UNREADABLE' ? 'ERR_FILE_UNREADABLE' : 'ERR_FILE_DENIED';
    throw new FileError(code, err.code, err.message);
  }
  throw err;
}

// ── A jailed directory ───────────────────────────────────────────────────────────────────────

export interface DirectorySourceOptions extends JailOptions {
  /** Files up to this size are held in memory and served from there until they change on disk. */
  readonly memoryFileMax?: number;
  /** Total bytes held in memory; the least recently used files leave first. */
  readonly memoryTotalMax?: number;
  /** Called with each path opened for reading (tests watch it to prove what was never opened). */
  readonly onOpen?: (path: string) => void;
}

interface Cached {
  readonly bytes: Buffer;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

export interface DirectorySource extends FileSource {
  readonly root: string;
  /** Bytes and files currently held in memory. */
  cacheStats(): { files: number; bytes: number; loads: number };
}

export function createDirectorySource(root: string, opts: DirectorySourceOptions = {}): DirectorySource {
  const memoryFileMax = opts.memoryFileMax ?? 8 * 1024 * 1024;
  const memoryTotalMax = opts.memoryTotalMax ?? 128 * 1024 * 1024;
  const cache = new Map<string, Cached>();
  let cachedBytes = 0;
  let loads = 0;
  // Concurrent first requests for the same file share one read.
  const loading = new Map<string, Promise<Buffer>>();

  function remember(path: string, entry: Cached): void {
    const old = cache.get(path);
    if (old) cachedBytes -= old.bytes.length;
    cache.delete(path);
    cache.set(path, entry);
    cachedBytes += entry.bytes.length;
    for (const [p, e] of cache) {
      if (cachedBytes <= memoryTotalMax) break;
      cache.delete(p);
      cachedBytes -= e.bytes.length;
    }
  }

  return {
    root,
    cacheStats: () => ({ files: cache.size, bytes: cachedBytes, loads }),
    async open(name) {
      let resolved;
      try {
        resolved = await resolveInside(root, name, opts);
      } catch (err) {
        fromJail(err);
      }
      if (resolved.size <= memoryFileMax) {
        const hit = cache.get(resolved.path);
        // Reloaded when it changes on disk: same inode, size and times, or read again.
        if (hit && hit.ino === resolved.ino && hit.size === resolved.size && hit.mtimeMs === resolved.mtimeMs && hit.ctimeMs === resolved.ctimeMs) {
          cache.delete(resolved.path);
          cache.set(resolved.path, hit);
          return memoryFile(name, hit.bytes);
        }
        const key = `${resolved.path}\0${resolved.ino}\0${resolved.mtimeMs}\0${resolved.size}`;
        let pending = loading.get(key);
        if (!pending) {
          const r = resolved;
          pending = (async () => {
            const f = await openResolved(root, r, opts).catch(fromJail);
            opts.onOpen?.(f.path);
            try {
              const bytes = Buffer.alloc(f.size);
              let got = 0;
              while (got < f.size) {
                const { bytesRead } = await f.handle.read(bytes, got, f.size - got, got);
                if (bytesRead === 0) break;
                got += bytesRead;
              }
              loads++;
              const content = got === f.size ? bytes : bytes.subarray(0, got);
              remember(r.path, { bytes: content, ino: r.ino, size: content.length, mtimeMs: r.mtimeMs, ctimeMs: r.ctimeMs });
              return content;
            } finally {
              await f.handle.close();
            }
          })().finally(() => loading.delete(key));
          loading.set(key, pending);
        }
        return memoryFile(name, await pending);
      }
      const f = await openResolved(root, resolved, opts).catch(fromJail);
      opts.onOpen?.(f.path);
      return streamedFile(name, f.handle, f.size);
    },
  };
}

// ── Generated files ──────────────────────────────────────────────────────────────────────────

export type GeneratedContent = Buffer | string | (() => Buffer | string | Promise<Buffer | string>);

/** Files other parts of racksmith generate and register by name (served before the directory). */
export interface FileRegistry extends FileSource {
  register(name: string, content: GeneratedContent): void;
  unregister(name: string): boolean;
  names(): string[];
}

export function createFileRegistry(): FileRegistry {
  const files = new Map<string, GeneratedContent>();
  return {
    register(name, content) {
      // Registered names obey the same rules as requested ones, so every registered file is reachable.
      checkRequestPath(name);
      files.set(name, content);
    },
    unregister: (name) => files.delete(name),
    names: () => [...files.keys()].sort(),
    async open(name) {
      const content = files.get(name);
      if (content === undefined) throw new FileError('ERR_FILE_NOT_FOUND', 'ERR_JAIL_NOT_FOUND', `${name} is not a generated file`);
      let value: Buffer | string;
      try {
        value = typeof content === 'function' ? await content() : content;
      } catch (err) {
        throw new FileError('ERR_FILE_UNREADABLE', 'ERR_GENERATOR', `generating ${name} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      return memoryFile(name, typeof value === 'string' ? Buffer.from(value, 'utf8') : value);
    },
  };
}

/** Asks each source in turn; "not found" moves on, any other refusal is final. */
export function layeredSource(sources: readonly FileSource[]): FileSource {
  return {
    async open(name, client) {
      let last: unknown = new FileError('ERR_FILE_NOT_FOUND', 'ERR_JAIL_NOT_FOUND', `${name} not found`);
      for (const s of sources) {
        try {
          return await s.open(name, client);
        } catch (err) {
          if (err instanceof FileError && err.code === 'ERR_FILE_NOT_FOUND') {
            last = err;
            continue;
          }
          throw err;
        }
      }
      throw last;
    },
  };
}

/** Opens a file racksmith itself located (not a client-named one): streamed, not held in memory. */
export async function openLocalFile(path: string, name: string): Promise<OpenedFile> {
  let handle;
  try {
    handle = await openHandle(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FileError(code === 'ENOENT' ? 'ERR_FILE_NOT_FOUND' : 'ERR_FILE_UNREADABLE', code ?? 'ERR_OPEN', `${name}: ${(err as Error).message}`);
  }
  return streamedFile(name, handle, (await handle.stat()).size);
}

/** A file read from an open handle as the sender asks (fewer bytes only at its end). */
function streamedFile(name: string, h: FileHandle, size: number): OpenedFile {
  return {
    name,
    size,
    bytes: null,
    async read(position, length) {
      const want = Math.max(0, Math.min(length, size - position));
      const buf = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await h.read(buf, got, want - got, position + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === want ? buf : buf.subarray(0, got);
    },
    async close() {
      await h.close();
    },
  };
}
