import type { BootScriptRecord, MachineRepo } from '../inventory/store.js';
import type { Logger } from '../lib/log.js';

/**
 * The machine steps a DHCP service records (a known machine's facts on first contact, the
 * event of each request and reply, its last step `dhcp`), written behind the answers and in
 * their order: one commit at a time, holding every step decided while the previous one ran.
 * Nothing the loop decides waits for it, so a store that takes milliseconds to commit (a
 * PostgreSQL shared by several instances, with fsync) never holds a datagram in the queue;
 * under a burst, one commit carries the steps of many exchanges (docs/dhcp.md, "Recording").
 * Only lease bindings are written before their reply (commit.ts).
 */

/** What the journal needs of the inventory: the boot path's one-transaction step writer. */
export type StepWrites = Pick<MachineRepo, 'recordBootScripts'>;

/** Steps in one commit at most. */
export const STEP_BATCH = 256;
/** Steps waiting behind a slow store at most; beyond this they are dropped and counted. */
export const MAX_WAITING_STEPS = 50_000;

export interface JournalDeps {
  readonly machines: StepWrites;
  readonly log: Logger;
  /** Called once per step that could not be recorded (refused, failed, or over the backlog). */
  readonly unrecorded: () => void;
}

export class StepJournal {
  private readonly queue: BootScriptRecord[] = [];
  private writing: Promise<void> | null = null;
  private scheduled = false;

  constructor(private readonly deps: JournalDeps) {}

  /** Steps not yet committed (waiting or in the commit under way). */
  get waiting(): number {
    return this.queue.length;
  }

  /** Queues a step; it is committed after the current turn, after every step queued before it. */
  record(step: BootScriptRecord): void {
    if (this.queue.length >= MAX_WAITING_STEPS) {
      this.deps.unrecorded();
      return;
    }
    this.queue.push(step);
    this.schedule();
  }

  /** Resolves once every step queued so far has been committed (or given up). */
  async settled(): Promise<void> {
    // Bounded: each pass commits at least one batch or gives it up.
    for (let i = 0; i <= MAX_WAITING_STEPS / STEP_BATCH + 1 && (this.queue.length > 0 || this.writing); i++) {
      if (!this.writing) this.flush();
      await this.writing;
    }
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.writing || this.queue.length === 0) return;
    const batch = this.queue.slice(0, STEP_BATCH);
    this.writing = this.commit(batch).finally(() => {
      this.queue.splice(0, batch.length);
      this.writing = null;
      if (this.queue.length > 0) this.schedule();
    });
  }

  /** Never rejects: a step the store refuses, or a commit that fails, is logged and counted. */
  private async commit(batch: readonly BootScriptRecord[]): Promise<void> {
    try {
      const outcomes = await this.deps.machines.recordBootScripts(batch);
      outcomes.forEach((o, i) => {
        if (o.ok) return;
        this.deps.unrecorded();
        this.deps.log.warn({ mac: batch[i]?.sighting.mac, err: o.error.message }, 'DHCP: could not record a machine step');
      });
    } catch (err) {
      for (let i = 0; i < batch.length; i++) this.deps.unrecorded();
      this.deps.log.warn({ steps: batch.length, err: err instanceof Error ? err.message : String(err) }, 'DHCP: could not record machine steps');
    }
  }
}
