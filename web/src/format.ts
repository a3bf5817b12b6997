/** Words and numbers the way a tech reads them on a tile. */

/** "3m05s": time in the current state. */
export function elapsed(sinceIso: string | null, now = Date.now()): string {
  if (!sinceIso) return '—';
  const s = Math.max(0, Math.floor((now - Date.parse(sinceIso)) / 1000));
  if (!Number.isFinite(s)) return '—';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

export function when(iso: string | null): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** The boot path in order, as DESIGN.md draws it; a tile shows where a machine is on it. */
export const STATE_HINT: Record<string, string> = {
  discovered: 'seen on the network, waiting for a role',
  assigned: 'has a role; waiting to boot the installer',
  provisioning: 'installer running',
  installed: 'OS on disk; first boot next',
  ready: 'phoned home; ready to join',
  joining: 'joining its cluster',
  joined: 'in its cluster',
  failed: 'failed; see its events',
  reimaging: 'being reimaged',
};

export function label(v: string | null | undefined): string {
  return v === null || v === undefined || v === '' ? '—' : v;
}

/** "on · 4m ago": the cached power state and how old it is; "unknown" when never read. */
export function powerText(state: string | null, at: string | null, now = Date.now()): string {
  if (!state) return 'unknown';
  return at ? `${state} · ${elapsed(at, now)} ago` : state;
}

/** Machine states in the order a tech wants to see them: trouble first, then the boot path. */
export const STATE_ORDER = ['failed', 'reimaging', 'discovered', 'assigned', 'provisioning', 'installed', 'ready', 'joining', 'joined'];

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * A tile's boot line: firmware and arch as racksmith saw them, the boot loader (the last one
 * served, else the machine's own setting), and Secure Boot as seen (not the operator's mark).
 */
export function bootSummary(m: {
  readonly firmware: string | null;
  readonly arch: string | null;
  readonly bootLoader: string | null;
  readonly secureBootSeen: string | null;
  readonly boot?: { readonly lastLoader: string | null } | undefined;
}): string {
  const seen = m.firmware || m.arch ? [m.firmware === 'efi' ? 'UEFI' : m.firmware === 'bios' ? 'BIOS' : null, m.arch].filter(Boolean).join(' ') : 'firmware not seen yet';
  const loader = m.boot?.lastLoader ?? (m.bootLoader ? `${m.bootLoader} (set)` : null);
  const sb = m.secureBootSeen === 'enforced' ? 'Secure Boot enforced' : m.secureBootSeen === 'off' ? 'Secure Boot off' : 'Secure Boot not seen';
  return [seen, loader ? `loader ${loader}` : 'loader not served yet', sb].join(' · ');
}
