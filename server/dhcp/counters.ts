/** What the DHCP service counts, read through `health().detail` (and from there by /metrics). */
export interface DhcpCounters {
  received: number;
  /** Replies handed to the kernel, by reason (a failed send is also counted as `dropped.send-error`). */
  replies: Record<string, number>;
  /** Malformed (by ProtocolError code), ignored (by decision reason) and loop-level drops. */
  dropped: Record<string, number>;
  /** Non-replying outcomes that are not drops (release, decline). */
  handled: Record<string, number>;
}

export function newCounters(): DhcpCounters {
  return { received: 0, replies: {}, dropped: {}, handled: {} };
}

export function bump(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}
