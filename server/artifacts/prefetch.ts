import { errorMessage } from '../lib/errors.js';
import { artifactFiles, type ReleaseInstaller } from '../boot/releases.js';
import type { ArtifactSource, ArtifactStore } from './store.js';

/**
 * Prefetch: every installer artifact a set of releases' machines will ask for, put into the cache
 * before the rack is powered on — the 20.04+ live-server ISO is gigabytes, and forty machines must
 * not wait on its first download. It goes through the store's `resolve`, so a download already
 * running (a machine asked first) is joined, never started twice. Files inside the ISO come after
 * the ISO itself. Progress is reported per file while it runs.
 */
export type PrefetchItemState = 'pending' | 'fetching' | 'done' | 'failed';

export interface PrefetchItem {
  readonly release: string;
  readonly file: string;
  readonly state: PrefetchItemState;
  /** Where the file came from once done: the artifacts directory, the cache, or fetched now. */
  readonly source: ArtifactSource | null;
  readonly bytes: number;
  readonly total: number | null;
  readonly error: string | null;
}

export interface PrefetchResult {
  readonly ok: boolean;
  readonly items: readonly PrefetchItem[];
  readonly seconds: number;
}

/** The files, in the order to fetch them: per release, the ISO first (its kernel and initrd may come out of it). */
export function prefetchList(installers: readonly ReleaseInstaller[]): Array<{ release: string; file: string }> {
  const seen = new Set<string>();
  const out: Array<{ release: string; file: string }> = [];
  for (const inst of installers) {
    if (seen.has(inst.release)) continue;
    seen.add(inst.release);
    const files = artifactFiles(inst);
    const ordered = inst.iso ? [inst.iso, ...files.filter((f) => f !== inst.iso)] : files;
    for (const file of ordered) out.push({ release: inst.release, file });
  }
  return out;
}

export interface PrefetchOptions {
  /** Called with every item's state whenever it changes, and every `intervalMs` while a download runs. */
  readonly onProgress?: ((items: readonly PrefetchItem[]) => void) | undefined;
  readonly intervalMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

export async function prefetchArtifacts(store: Pick<ArtifactStore, 'resolve' | 'progress'>, files: ReadonlyArray<{ release: string; file: string }>, opts: PrefetchOptions = {}): Promise<PrefetchResult> {
  const started = Date.now();
  const items: PrefetchItem[] = files.map((f) => ({ ...f, state: 'pending', source: null, bytes: 0, total: null, error: null }));
  const report = (): void => opts.onProgress?.(items.map((i) => ({ ...i })));
  report();
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as PrefetchItem;
    if (opts.signal?.aborted) {
      items[i] = { ...item, state: 'failed', error: 'cancelled' };
      continue;
    }
    // Reported once a download shows progress: a file already at hand goes from waiting to done.
    items[i] = { ...item, state: 'fetching' };
    const timer = setInterval(() => {
      const p = store.progress(item.release, item.file);
      if (p) {
        items[i] = { ...(items[i] as PrefetchItem), bytes: p.bytes, total: p.total };
        report();
      }
    }, opts.intervalMs ?? 1000);
    try {
      const art = await store.resolve(item.release, item.file);
      items[i] = { ...(items[i] as PrefetchItem), state: 'done', source: art.source, bytes: art.size, total: art.size };
    } catch (err) {
      items[i] = { ...(items[i] as PrefetchItem), state: 'failed', error: errorMessage(err) };
    } finally {
      clearInterval(timer);
    }
    report();
  }
  return { ok: items.every((i) => i.state === 'done'), items: items.map((i) => ({ ...i })), seconds: (Date.now() - started) / 1000 };
}

function size(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${bytes} bytes`;
}

/** One line for people: `22.04/vmlinuz  fetching  412.0 MiB of 2.00 GiB (20%)`. */
export function prefetchLine(i: PrefetchItem): string {
  const name = `${i.release}/${i.file}`;
  switch (i.state) {
    case 'pending':
      return `${name}  waiting`;
    case 'fetching':
      return `${name}  fetching  ${size(i.bytes)}${i.total ? ` of ${size(i.total)} (${Math.floor((100 * i.bytes) / i.total)}%)` : ''}`;
    case 'done':
      return `${name}  ${i.source === 'fetched' ? 'fetched' : i.source === 'local' ? 'in the artifacts directory' : 'cached'} (${size(i.bytes)})`;
    case 'failed':
      return `${name}  FAILED: ${i.error ?? 'unknown error'}`;
  }
}
