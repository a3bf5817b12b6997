import { constants as fsc } from 'node:fs';
import { open, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import { sep } from 'node:path';

/**
 * Paths that a client names (a TFTP filename, an HTTP artifact path) resolved inside one root
 * directory, and nowhere else. Two layers:
 *
 *   1. `checkRequestPath` (pure) refuses the name itself: `..`, `.`, empty segments, absolute
 *      paths, backslashes, NUL and other control bytes, and percent-encoding (a client that
 *      sends `%2e%2e` means either an escape or a name we would decode differently from the
 *      operator's file system — neither is served).
 *   2. `openInside` resolves every symlink with realpath() and refuses a result that is not
 *      under the root's own realpath (or one of a few files explicitly allowed) BEFORE anything
 *      is opened; it then opens without following a final symlink and checks that the opened
 *      file is the one that was checked (same device and inode, and /proc says it is inside).
 *
 * Nothing here knows about TFTP or HTTP.
 */

export type JailErrorCode =
  | 'ERR_JAIL_EMPTY'
  | 'ERR_JAIL_ABSOLUTE'
  | 'ERR_JAIL_TRAVERSAL'
  | 'ERR_JAIL_BACKSLASH'
  | 'ERR_JAIL_CONTROL'
  | 'ERR_JAIL_ENCODED'
  | 'ERR_JAIL_TOO_LONG'
  | 'ERR_JAIL_OUTSIDE'
  | 'ERR_JAIL_NOT_FOUND'
  | 'ERR_JAIL_NOT_FILE'
  | 'ERR_JAIL_UNREADABLE';

export class JailError extends Error {
  readonly code: JailErrorCode;
  constructor(code: JailErrorCode, message: string) {
    super(message);
    this.name = 'JailError';
    this.code = code;
  }
}

/** Refusals that mean "you may not", as opposed to "there is no such file". */
export function isDenial(code: JailErrorCode): boolean {
  return code !== 'ERR_JAIL_NOT_FOUND' && code !== 'ERR_JAIL_UNREADABLE';
}

export const MAX_REQUEST_PATH = 1024;

/**
 * Checks a client-supplied relative path and returns its segments. Pure: no file system.
 */
export function checkRequestPath(name: string): string[] {
  const shown = JSON.stringify(name.length > 80 ? name.slice(0, 80) + '…' : name);
  if (name.length === 0) throw new JailError('ERR_JAIL_EMPTY', 'the path is empty');
  if (name.length > MAX_REQUEST_PATH) throw new JailError('ERR_JAIL_TOO_LONG', `the path is longer than ${MAX_REQUEST_PATH} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new JailError('ERR_JAIL_CONTROL', `${shown} contains a NUL or control character`);
  if (name.includes('\\')) throw new JailError('ERR_JAIL_BACKSLASH', `${shown} contains a backslash`);
  if (name.includes('%')) throw new JailError('ERR_JAIL_ENCODED', `${shown} contains percent-encoding`);
  if (name.startsWith('/')) throw new JailError('ERR_JAIL_ABSOLUTE', `${shown} is an absolute path`);
  const segments = name.split('/');
  for (const s of segments) {
    if (s === '..') throw new JailError('ERR_JAIL_TRAVERSAL', `${shown} climbs out with ".."`);
    if (s === '.' || s === '') throw new JailError('ERR_JAIL_TRAVERSAL', `${shown} has an empty or "." segment`);
  }
  return segments;
}

export interface JailOptions {
  /**
   * Files outside the root that a symlink inside it may point to (absolute, exact paths). For
   * packages that install links out of their own folder, such as Debian's ipxe linking
   * `/usr/lib/ipxe/ipxe.efi` to `/boot/ipxe.efi`.
   */
  readonly allowLinksTo?: readonly string[];
}

export interface OpenedInside {
  readonly handle: FileHandle;
  /** The resolved path that was checked and opened. */
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
  readonly dev: number;
}

export interface ResolvedInside {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly ino: number;
  readonly dev: number;
}

function within(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** The root's own realpath (a root given through a symlink is fine; what is inside it is judged). */
export async function realRoot(root: string): Promise<string> {
  return realpath(root);
}

/**
 * Resolves a client path to a regular file inside the root, following symlinks only as far as
 * their destination stays inside. Opens nothing.
 */
export async function resolveInside(root: string, name: string, opts: JailOptions = {}): Promise<ResolvedInside> {
  const segments = checkRequestPath(name);
  let base: string;
  try {
    base = await realRoot(root);
  } catch (err) {
    throw new JailError('ERR_JAIL_UNREADABLE', `the root ${root} cannot be resolved (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const candidate = [base, ...segments].join(sep);
  let real: string;
  try {
    real = await realpath(candidate);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new JailError('ERR_JAIL_NOT_FOUND', `${name} does not exist`);
    if (code === 'ELOOP') throw new JailError('ERR_JAIL_OUTSIDE', `${name} is a symlink loop`);
    throw new JailError('ERR_JAIL_UNREADABLE', `${name} cannot be resolved (${code ?? String(err)})`);
  }
  const allowed = opts.allowLinksTo ?? [];
  if (!within(base, real) && !allowed.includes(real)) {
    throw new JailError('ERR_JAIL_OUTSIDE', `${name} resolves outside the root`);
  }
  let st;
  try {
    st = await stat(real);
  } catch (err) {
    throw new JailError('ERR_JAIL_NOT_FOUND', `${name} vanished (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (st.isDirectory()) throw new JailError('ERR_JAIL_NOT_FOUND', `${name} is a directory`);
  if (!st.isFile()) throw new JailError('ERR_JAIL_NOT_FILE', `${name} is not a regular file`);
  return { path: real, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, dev: st.dev };
}

/**
 * Opens a file that `resolveInside` accepted. O_NOFOLLOW refuses a final component swapped for
 * a symlink since the check, O_NONBLOCK keeps a FIFO swapped in from blocking the open, and the
 * identity check refuses anything that is not the very file that was checked.
 */
export async function openResolved(root: string, r: ResolvedInside, opts: JailOptions = {}): Promise<OpenedInside> {
  let handle: FileHandle;
  try {
    handle = await open(r.path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new JailError('ERR_JAIL_NOT_FOUND', `${r.path} vanished`);
    if (code === 'ELOOP') throw new JailError('ERR_JAIL_OUTSIDE', `${r.path} became a symlink`);
    throw new JailError('ERR_JAIL_UNREADABLE', `cannot open ${r.path} (${code ?? String(err)})`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.ino !== r.ino || st.dev !== r.dev) throw new JailError('ERR_JAIL_OUTSIDE', `${r.path} changed while it was being opened`);
    const base = await realRoot(root);
    const opened = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => r.path);
    if (!within(base, opened) && !(opts.allowLinksTo ?? []).includes(opened)) throw new JailError('ERR_JAIL_OUTSIDE', `${r.path} was opened outside the root`);
    return { handle, path: r.path, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

export async function openInside(root: string, name: string, opts: JailOptions = {}): Promise<OpenedInside> {
  return openResolved(root, await resolveInside(root, name, opts), opts);
}
