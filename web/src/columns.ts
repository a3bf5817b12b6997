import type { Machine } from './api.js';
import { h } from './dom.js';
import { elapsed, label, powerText, STATE_ORDER } from './format.js';

/**
 * The machine table's columns, one entry each: what the header says, the text of a cell, and
 * what it sorts by. A new machine field (firmware details, install disk…) is one line here.
 */
export interface Column {
  readonly key: string;
  readonly label: string;
  /** The cell: text, or an element for links and badges. */
  readonly cell: (m: Machine) => string | Node;
  /** The sort key; defaults to the cell's text. */
  readonly sort?: (m: Machine) => string | number;
  /** Narrow columns are monospaced numbers and addresses. */
  readonly mono?: boolean;
}

const text = (v: string | null | undefined): string => label(v);

export const COLUMNS: readonly Column[] = [
  { key: 'hostname', label: 'Host', cell: (m) => h('a', { href: `#/machines/${m.mac}` }, m.hostname ?? m.mac), sort: (m) => m.hostname ?? m.mac },
  { key: 'mac', label: 'MAC', cell: (m) => m.mac, mono: true },
  { key: 'ip', label: 'IP', cell: (m) => text(m.ip), sort: (m) => (m.ip ? m.ip.split('.').map((o) => o.padStart(3, '0')).join('.') : '~'), mono: true },
  { key: 'rack', label: 'Rack', cell: (m) => (m.rack ? `${m.rack}${m.unit !== null ? ` U${m.unit}` : ''}` : '—'), sort: (m) => `${m.rack ?? '~'} ${String(99 - (m.unit ?? 0)).padStart(2, '0')}` },
  { key: 'cluster', label: 'Cluster', cell: (m) => (m.cluster ? h('a', { href: `#/clusters/${m.cluster}` }, m.cluster) : '—'), sort: (m) => m.cluster ?? '~' },
  { key: 'role', label: 'Role', cell: (m) => text(m.role), sort: (m) => m.role ?? '~' },
  { key: 'state', label: 'State', cell: (m) => h('span', { class: `badge state-${m.state}` }, m.state), sort: (m) => STATE_ORDER.indexOf(m.state) },
  { key: 'power', label: 'Power', cell: (m) => h('span', { class: `power power-${m.powerState ?? 'unknown'}`, 'data-since': m.powerStateAt ?? '' }, powerText(m.powerState, m.powerStateAt)), sort: (m) => m.powerState ?? '~' },
  { key: 'step', label: 'Boot step', cell: (m) => text(m.lastStep), sort: (m) => m.lastStep ?? '~' },
  { key: 'firmware', label: 'Firmware / arch', cell: (m) => (m.firmware || m.arch ? `${label(m.firmware)} / ${label(m.arch)}` : '—'), sort: (m) => `${m.firmware ?? '~'} ${m.arch ?? ''}` },
  {
    key: 'boot',
    label: 'Boot loader',
    // The machine's choice (site default when unset) and Secure Boot as marked or seen; a stall after the bootfile says so.
    cell: (m) => `${m.bootLoader ?? 'default'}${m.secureBoot || m.secureBootSeen === 'enforced' ? ' · Secure Boot' : ''}${m.boot?.stuck ? ' · stuck' : ''}`,
    sort: (m) => `${m.boot?.stuck ? 0 : 1} ${m.bootLoader ?? '~'}`,
  },
  { key: 'for', label: 'In state', cell: (m) => h('span', { 'data-since': m.stateChangedAt, class: 'elapsed' }, elapsed(m.stateChangedAt)), sort: (m) => -Date.parse(m.stateChangedAt) },
];

/** What the free-text search looks in: host name, MAC (any spelling), IP. */
export function matchesSearch(m: Machine, q: string): boolean {
  if (!q) return true;
  const needle = q.toLowerCase().trim();
  const bare = needle.replace(/[^0-9a-f]/g, '');
  return (
    (m.hostname ?? '').includes(needle) ||
    m.mac.includes(needle) ||
    (bare.length >= 4 && /^[0-9a-f:.-]+$/.test(needle) && m.mac.replace(/:/g, '').includes(bare)) ||
    (m.ip ?? '').startsWith(needle)
  );
}
