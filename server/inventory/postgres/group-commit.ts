import type { PgDb, Queryable } from './db.js';

/**
 * Group commit for the boot path's small writes (an event, a machine's last step, the bootfile
 * it fetched, a lifecycle transition): every write asked for while the previous commit ran goes
 * into the next one. Each would otherwise be a transaction of its own, with its own WAL flush
 * and its own turn at the site's events lock (events.ts): under a rack's power-on burst,
 * hundreds a second. One commit per group keeps the order the writes were asked in, takes the
 * events lock once, and flushes the WAL once.
 *
 * A write that fails inside a batch aborts that transaction: the batch then runs again one write
 * per transaction, so that only the failing write reports the error.
 */

/** Writes in one transaction at most. */
export const GROUP_MAX = 256;

interface Waiting {
  readonly write: (c: Queryable) => Promise<unknown>;
  readonly resolve: (v: unknown) => void;
  readonly reject: (err: unknown) => void;
}

export class GroupCommit {
  private readonly queue: Waiting[] = [];
  private writing: Promise<void> | null = null;

  constructor(private readonly db: PgDb) {}

  /** Runs `write` in the next group's transaction; resolves once it has committed. */
  run<T>(write: (c: Queryable) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ write, resolve: resolve as (v: unknown) => void, reject });
      if (!this.writing) this.start();
    });
  }

  /** Resolves once nothing is waiting or being written. */
  async settled(): Promise<void> {
    for (let i = 0; i < 1_000 && this.writing; i++) await this.writing;
  }

  private start(): void {
    // After the current turn: the writes asked for in this turn join the first group.
    this.writing = new Promise<void>((r) => setImmediate(r)).then(() => this.drain());
  }

  private async drain(): Promise<void> {
    try {
      // Bounded: each pass takes at least one write off the queue.
      for (let pass = 0; pass < 100_000 && this.queue.length > 0; pass++) await this.commit(this.queue.splice(0, GROUP_MAX));
    } finally {
      this.writing = null;
      if (this.queue.length > 0) this.start();
    }
  }

  private async commit(group: readonly Waiting[]): Promise<void> {
    let results: unknown[];
    try {
      results = await this.db.tx(async (c) => {
        const out: unknown[] = [];
        for (const w of group) out.push(await w.write(c));
        return out;
      });
    } catch (err) {
      if (group.length === 1) {
        group[0]?.reject(err);
        return;
      }
      for (const w of group) await this.db.tx(w.write).then(w.resolve, w.reject);
      return;
    }
    group.forEach((w, i) => w.resolve(results[i]));
  }
}
