/** How long "this MAC was just handed undionly.kpxe" counts for recognising the chained iPXE. */
export const CHAINLOAD_WINDOW_MS = 120_000;
/** MACs remembered before the ones older than the window are dropped. */
const REMEMBERED = 10_000;

/**
 * Which MACs were just handed the BIOS bootfile (`undionly.kpxe`). A vendor PXE ROM's chained
 * iPXE may ask in the ROM's own words; that MAC asking again within the window, once its last
 * step is `tftp`, is the chained iPXE (classify.ts, `chainloaded`).
 */
export class Chainloads {
  private readonly handedAt = new Map<string, number>();

  handed(mac: string, now: number): void {
    if (this.handedAt.size > REMEMBERED) for (const [m, at] of this.handedAt) if (now - at > CHAINLOAD_WINDOW_MS) this.handedAt.delete(m);
    this.handedAt.set(mac, now);
  }

  /** The MAC was handed the BIOS bootfile less than the window ago. */
  recent(mac: string, now: number): boolean {
    const at = this.handedAt.get(mac);
    return at !== undefined && now - at < CHAINLOAD_WINDOW_MS;
  }
}
