/**
 * The datagrams waiting to be handled, handled one at a time in arrival order: synchronously
 * while each finishes synchronously, and after the store answers when one has to wait (the next
 * one starts only then). So the facts one decision read are never changed under it by another,
 * and the common path — no write before the reply — makes no promise at all.
 */
export class SerialQueue<T> {
  /** Oldest first; `head` is the next one. */
  private items: T[] = [];
  private head = 0;
  /** An item is being handled (possibly waiting for the store): new items only queue. */
  private running = false;
  private readonly idle: (() => void)[] = [];

  /**
   * `handle` returns a promise when it has to wait; `failed` hears whatever it throws or rejects
   * with, and the queue goes on with the next item.
   */
  constructor(
    private readonly handle: (item: T) => Promise<void> | void,
    private readonly failed: (err: unknown) => void,
    /** Items waiting behind the one being handled, at most. */
    readonly max: number,
  ) {}

  get waiting(): number {
    return this.items.length - this.head;
  }

  /** Queues the item and starts handling if idle; false (nothing queued) when `max` are waiting. */
  push(item: T): boolean {
    if (this.items.length - this.head >= this.max) return false;
    this.items.push(item);
    if (!this.running) this.drain();
    return true;
  }

  /** Resolves once every queued item has been handled. */
  drained(): Promise<void> {
    return this.running ? new Promise((resolve) => this.idle.push(resolve)) : Promise.resolve();
  }

  private readonly drain = (): void => {
    this.running = true;
    while (this.head < this.items.length) {
      const item = this.items[this.head++] as T;
      // Under steady load the queue may never run empty: drop what was handled now and then.
      if (this.head >= 4096 && this.head * 2 >= this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      let waiting: Promise<void> | void;
      try {
        waiting = this.handle(item);
      } catch (err) {
        this.failed(err);
        continue;
      }
      if (waiting) {
        waiting.then(this.drain, this.failedThenDrain);
        return;
      }
    }
    this.items = [];
    this.head = 0;
    this.running = false;
    for (const resolve of this.idle.splice(0)) resolve();
  };

  private readonly failedThenDrain = (err: unknown): void => {
    this.failed(err);
    this.drain();
  };
}
