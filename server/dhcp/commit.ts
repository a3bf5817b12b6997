import type { LeaseRepo } from '../inventory/store.js';
import { logFailure } from '../inventory/unavailable.js';
import type { Logger } from '../lib/log.js';
import type { AddressSpace } from './addresses.js';
import { bump, type DhcpCounters } from './counters.js';
import type { LeaseEffect } from './decision.js';

/**
 * Lease writes: an ACK leaves only once its binding is in the store (RFC 2131 §4.3.1 leaves
 * durability to the server; an ACK for a lease that a crash then forgets would let the address
 * go to a second MAC — decision 0303). ACKs decided close together share one commit (group
 * commit), and the book is brought back in line with the store when a commit fails or refuses
 * a binding.
 */

/** What the commits need of the lease table, and nothing more. */
export type LeaseWrites = Pick<LeaseRepo, 'bindAll' | 'byIp' | 'byMac' | 'release' | 'decline'>;

/** What a commit reports back to the address space. */
export type CommitTarget = Pick<AddressSpace, 'durable' | 'reservedElsewhere' | 'resync'>;

export type Binding = Extract<LeaseEffect, { kind: 'bind' }>;

/** ACKs committed together at most (group commit). */
export const ACK_BATCH = 16;
/**
 * How long the first ACK of a batch waits for others to share its commit. A commit's fixed cost
 * (BEGIN, the WAL frames, COMMIT) is about as much as one lease's own row work, so batches of
 * one or two cost more CPU per exchange than waiting this long (docs/dhcp.md, "Performance"). A
 * client waits seconds for its ACK; 1 ms is nothing.
 */
export const ACK_WINDOW_MS = 1;
/** Bindings a long database outage may leave to be read again (each names one address and one MAC). */
const MAX_STALE = 4_096;

export interface CommitDeps<T> {
  readonly leases: LeaseWrites;
  readonly space: CommitTarget;
  /** Sends an ACK whose binding is committed. */
  readonly deliver: (ack: T) => void;
  readonly counters: DhcpCounters;
  readonly log: Logger;
  readonly now: () => number;
  /** Runs `flush` after ACK_WINDOW_MS; tests pass their own. */
  readonly later?: (flush: () => void, ms: number) => void;
}

interface Pending<T> {
  readonly binding: Binding;
  readonly ack: T;
}

export class LeaseCommits<T> {
  private pending: Pending<T>[] = [];
  private scheduled = false;
  /** Commits under way (the store may take a while to answer). */
  private readonly committing = new Set<Promise<void>>();
  private readonly later: (flush: () => void, ms: number) => void;
  /** Bindings whose store rows could not be read after a failed commit: read before the next one. */
  private readonly stale = new Map<string, Binding>();

  constructor(private readonly deps: CommitDeps<T>) {
    this.later = deps.later ?? ((flush, ms) => void setTimeout(flush, ms));
  }

  /** ACKs waiting for their commit. */
  get waiting(): number {
    return this.pending.length;
  }

  /**
   * Queues an ACK that may leave only once its binding is committed. The batch commits once the
   * window has passed, or at once when it is full: one transaction per batch, and no long train
   * of ACKs that would overrun a client's buffer.
   */
  add(binding: Binding, ack: T): void {
    this.pending.push({ binding, ack });
    if (this.pending.length >= ACK_BATCH) void this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      this.later(this.windowPassed, ACK_WINDOW_MS);
    }
  }

  /** Commits what is pending. Never rejects: a failure here is logged and counted. */
  flush(): Promise<void> {
    const batch = this.pending;
    if (batch.length === 0) return Promise.resolve();
    this.pending = [];
    const committing: Promise<void> = this.commit(batch)
      .catch((err: unknown) => {
        bump(this.deps.counters.dropped, 'internal-error');
        this.deps.log.error({ err: err instanceof Error ? err.stack : String(err) }, 'DHCP: could not finish a lease commit');
      })
      .finally(() => this.committing.delete(committing));
    this.committing.add(committing);
    return committing;
  }

  /** Commits what is pending and waits for every commit under way: their ACKs have left after it. */
  async settle(): Promise<void> {
    await this.flush();
    await Promise.all([...this.committing]);
  }

  /** A RELEASE or DECLINE written to the store (the book has it already). */
  write(e: Extract<LeaseEffect, { kind: 'release' | 'decline' }>, now: number): Promise<boolean> {
    const { leases } = this.deps;
    return e.kind === 'release' ? leases.release(e.ip, e.mac, new Date(now)) : leases.decline(e.ip, e.mac, new Date(e.until), new Date(now));
  }

  private readonly windowPassed = (): void => {
    this.scheduled = false;
    void this.flush();
  };

  private async commit(batch: readonly Pending<T>[]): Promise<void> {
    const { leases, space, counters, log, now } = this.deps;
    // What a failed commit left unread is read first: the store may be back.
    if (this.stale.size > 0) await this.resyncAll([...this.stale.values()]);
    let outcomes;
    try {
      outcomes = await leases.bindAll(
        batch.map((p) => ({
          ip: p.binding.ip,
          mac: p.binding.mac,
          clientId: p.binding.clientId,
          hostname: p.binding.hostname,
          expiresAt: new Date(p.binding.until).toISOString(),
        })),
        new Date(now()),
      );
    } catch (err) {
      // Nothing was committed: no ACK may go out, and the book must forget the optimistic binds.
      await this.resyncAll(batch.map((p) => p.binding));
      bump(counters.dropped, 'store-error');
      logFailure(log, err, 'DHCP: could not persist leases; ACKs withheld', { acks: batch.length });
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i] as Pending<T>;
      const o = outcomes[i];
      if (o?.ok) {
        space.durable(p.binding.ip, p.binding.mac);
        this.deps.deliver(p.ack);
      } else {
        bump(counters.dropped, 'bind-refused');
        if (o && !o.ok && o.reason === 'reserved') space.reservedElsewhere(p.binding.ip, now());
        await this.resyncAll([p.binding]);
        log.warn({ ip: p.binding.ip, mac: p.binding.mac, why: o && !o.ok ? o.reason : 'unknown' }, 'DHCP: store refused a binding; ACK withheld');
      }
    }
  }

  /**
   * The book forgets what it mirrored of each binding's address and MAC and reads the store's
   * rows. One the store cannot give now (the database away: a failover, a restart) is kept and
   * read before the next commit, so the book does not go on believing a bind nobody committed.
   */
  private async resyncAll(bindings: readonly Binding[]): Promise<void> {
    for (const b of bindings) {
      const key = `${b.ip} ${b.mac}`;
      try {
        const rows = await Promise.all([this.deps.leases.byIp(b.ip), this.deps.leases.byMac(b.mac)]);
        this.deps.space.resync(b.ip, b.mac, rows);
        this.stale.delete(key);
      } catch {
        this.stale.delete(key);
        this.stale.set(key, b);
        // Bounded: past it the oldest are let go (their optimistic binds end with their lease).
        if (this.stale.size > MAX_STALE) this.stale.delete(this.stale.keys().next().value as string);
      }
    }
  }
}
