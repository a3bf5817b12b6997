/**
 * Answers remembered for a short while (`ttlMs`), for lookups a hot loop repeats within moments
 * (a DHCP DISCOVER and its REQUEST come milliseconds apart). Kept in two generations of at most
 * `generation` entries each: when the young one fills it becomes the old one and the previous old
 * one is dropped whole. Memory stays bounded without a sweep, and the answers just given survive
 * the drop — a single map cleared when full forgets them all at once, and the next burst of
 * requests would all go to the store again.
 */
export class RecentAnswers<V> {
  private young = new Map<string, { readonly value: V; readonly at: number }>();
  private old = new Map<string, { readonly value: V; readonly at: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly generation: number,
  ) {}

  /** The answer remembered for `key` if it is younger than the TTL at `now`, else undefined. */
  get(key: string, now: number): V | undefined {
    const hit = this.young.get(key) ?? this.old.get(key);
    return hit !== undefined && now - hit.at < this.ttlMs ? hit.value : undefined;
  }

  set(key: string, value: V, now: number): void {
    if (this.young.size >= this.generation) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, { value, at: now });
  }
}
