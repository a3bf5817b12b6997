/** What the DHCP service counts, read through `health().detail` (and from there by /metrics). */
export interface DhcpCounters {
  received: number;
  /** Replies handed to the kernel, by reason (a failed send is also counted as `dropped.send-error`). */
  replies: Record<string, number>;
  /** Malformed (by ProtocolError code), ignored (by decision reason) and loop-level drops. */
  dropped: Record<string, number>;
  /** Non-replying outcomes that are not drops (release, decline). */
  handled: Record<string, number>;
  /** Machine steps (events, last step) answered but not recorded: the store refused or failed them. */
  unrecorded: number;
}

export function newCounters(): DhcpCounters {
  return { received: 0, replies: {}, dropped: {}, handled: {}, unrecorded: 0 };
}

export function bump(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}
