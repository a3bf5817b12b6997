/**
 * The encoded bodies of recent list responses, reused while the store's revision is unchanged:
 * a page polling `GET /machines` for 5,000 machines costs one buffer write instead of reading and
 * encoding every row again. Any write anywhere in the store changes the revision, so an entry
 * can only be reused when nothing at all changed; at most `max` entries are kept.
 */
export interface CachedResponse {
  readonly body: Buffer;
  readonly headers: Readonly<Record<string, string>>;
  /** ms since the epoch after which the body is out of date without any write (a time-derived field changes). */
  readonly staleAt?: number;
}

export interface ResponseCache {
  get(key: string, revision: string): CachedResponse | undefined;
  set(key: string, revision: string, response: CachedResponse): void;
}

export function createResponseCache(max: number): ResponseCache {
  const entries = new Map<string, { revision: string; response: CachedResponse }>();
  return {
    get(key, revision) {
      const e = entries.get(key);
      if (!e) return undefined;
      if (e.revision !== revision || (e.response.staleAt !== undefined && Date.now() >= e.response.staleAt)) {
        entries.delete(key);
        return undefined;
      }
      return e.response;
    },
    set(key, revision, response) {
      entries.delete(key);
      entries.set(key, { revision, response });
      // Map keeps insertion order: the first key is the least recently stored.
      while (entries.size > max) entries.delete(entries.keys().next().value as string);
    },
  };
}
