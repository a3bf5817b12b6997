/**
 * How many unknown MACs one source may add to the inventory as `discovered` machines without any
 * credential. A real machine adds itself once (its iPXE asks /boot.ipxe with its own MAC from its
 * own address; its PXE ROM broadcasts on its segment), so a source that keeps adding new MACs is a
 * flood — a script looping over made-up MACs, a DHCP starvation tool — and past its allowance its
 * MACs are still answered but no longer recorded. Each source has a bucket of `perWindow`
 * allowances that refills at `perWindow` per `windowMs`: a rack powered on at once spends a
 * segment's bucket in a minute and has it back within the window.
 *
 * Pure apart from the injected clock; the callers decide what a source is (the HTTP client's
 * address; the DHCP relay or interface) and what to log.
 */
export interface DiscoveryLimit {
  /** New machines one source may add at once, and per window. */
  readonly perWindow: number;
  readonly windowMs: number;
}

export type Admission =
  | { readonly ok: true }
  /** `first`: the first refusal since this source last added a machine (log and record it once). */
  | { readonly ok: false; readonly first: boolean };

export interface DiscoveryGate {
  /** Spends one allowance of `source`, if it has one left. */
  admit(source: string): Admission;
  /** Refusals since start. */
  refused(): number;
}

interface Bucket {
  tokens: number;
  at: number;
  noted: boolean;
}

/** The window the allowances refill over. */
export const DISCOVERY_WINDOW_MS = 3_600_000;

/** Sources tracked at most; beyond it the idle ones (full buckets) are forgotten first. */
export const MAX_SOURCES = 10_000;

export function createDiscoveryGate(limit: DiscoveryLimit, now: () => number = Date.now, maxSources = MAX_SOURCES): DiscoveryGate {
  if (!(limit.perWindow >= 0) || !(limit.windowMs > 0)) throw new RangeError(`a discovery limit needs perWindow ≥ 0 and windowMs > 0, got ${limit.perWindow} per ${limit.windowMs} ms`);
  const buckets = new Map<string, Bucket>();
  let refusals = 0;
  const rate = limit.perWindow / limit.windowMs;

  function refill(b: Bucket, t: number): void {
    b.tokens = Math.min(limit.perWindow, b.tokens + Math.max(0, t - b.at) * rate);
    b.at = t;
  }

  function forgetIdle(t: number): void {
    for (const [key, b] of buckets) {
      refill(b, t);
      if (b.tokens >= limit.perWindow) buckets.delete(key);
    }
    // Still full of busy sources: drop the oldest, which only gives them a fresh allowance.
    for (const key of buckets.keys()) {
      if (buckets.size < maxSources) break;
      buckets.delete(key);
    }
  }

  return {
    admit(source) {
      const t = now();
      let b = buckets.get(source);
      if (!b) {
        if (buckets.size >= maxSources) forgetIdle(t);
        b = { tokens: limit.perWindow, at: t, noted: false };
        buckets.set(source, b);
      } else refill(b, t);
      if (b.tokens >= 1) {
        b.tokens -= 1;
        b.noted = false;
        return { ok: true };
      }
      refusals++;
      const first = !b.noted;
      b.noted = true;
      return { ok: false, first };
    },
    refused: () => refusals,
  };
}
