import { api, errorText, type InventoryEvent } from './api.js';
import { h, notice, replace } from './dom.js';
import { when } from './format.js';
import type { View } from './view.js';

/**
 * The event log: the whole site's (`#/events`) or one cluster's (on its page), newest first,
 * filtered by type and by text (host, MAC, message), kept in the URL, and live. The server sends
 * the newest 500 events for the filter; live ones are added at the top as they come.
 */

/** Event families, as the type's first word: what a tech filters by. */
export const EVENT_TYPES = ['state', 'dhcp', 'tftp', 'http', 'installer', 'phone-home', 'power', 'rack', 'reimage', 'orchestration', 'machine', 'cluster'];
const KEEP = 2000;

export interface EventLog {
  readonly el: HTMLElement;
  onEvent(e: InventoryEvent): void;
}

export interface EventLogOptions {
  readonly cluster?: string | undefined;
  readonly type?: string | undefined;
  readonly q?: string | undefined;
  /** Called with the filters whenever they change (the site log keeps them in the URL). */
  readonly onFilter?: ((f: { type: string; q: string }) => void) | undefined;
  /** Names for MACs, when the page knows them. */
  readonly nameOf?: ((mac: string) => string | undefined) | undefined;
}

const familyOf = (type: string): string => (type.startsWith('rack.') ? 'rack' : (type.split('.')[0] ?? type));

export async function eventLog(opts: EventLogOptions): Promise<EventLog> {
  let type = opts.type ?? '';
  let q = opts.q ?? '';
  let events: InventoryEvent[] = [];
  const body = h('tbody', null);
  const status = h('span', { class: 'count', role: 'status', 'data-field': 'event-count' });
  const typeSelect = h('select', { id: `events-type${opts.cluster ? '-c' : ''}`, name: 'type' }, h('option', { value: '' }, 'any'), EVENT_TYPES.map((t) => h('option', { value: t, selected: t === type }, t)));
  const search = h('input', { id: `events-q${opts.cluster ? '-c' : ''}`, type: 'search', value: q, placeholder: 'host, MAC or words', autocomplete: 'off' });

  const matches = (e: InventoryEvent): boolean => {
    if (opts.cluster && e.cluster !== opts.cluster) return false;
    if (type && familyOf(e.type) !== type) return false;
    if (!q) return true;
    const needle = q.toLowerCase();
    return e.message.toLowerCase().includes(needle) || (e.mac ?? '').includes(needle) || (e.mac ? (opts.nameOf?.(e.mac) ?? '') : '').includes(needle) || e.type.includes(needle);
  };
  const row = (e: InventoryEvent): HTMLElement =>
    h(
      'tr',
      { 'data-event': e.id, class: `ev-${familyOf(e.type)}${e.type === 'state' && e.data?.['to'] === 'failed' ? ' ev-failed' : ''}` },
      h('td', { class: 'mono when' }, h('time', { datetime: e.at }, when(e.at))),
      h('td', null, h('span', { class: 'type' }, e.type)),
      h('td', null, e.mac ? h('a', { href: `#/machines/${e.mac}` }, opts.nameOf?.(e.mac) ?? e.mac) : '—'),
      opts.cluster ? null : h('td', null, e.cluster ? h('a', { href: `#/clusters/${e.cluster}` }, e.cluster) : '—'),
      h('td', { class: 'message' }, e.message),
      h('td', { class: 'source' }, e.source ?? ''),
    );
  const draw = (): void => {
    const list = events.filter(matches);
    replace(body, list.slice(-KEEP).reverse().map(row));
    status.textContent = `${list.length} event${list.length === 1 ? '' : 's'}${events.length >= 500 ? ' (newest 500, then live)' : ''}`;
  };
  const load = async (): Promise<void> => {
    // The type filter is the server's too, so the newest 500 of that type come, not 500 of all.
    const serverType = type === 'rack' ? 'rack.power' : type;
    events = await api.siteEvents({ cluster: opts.cluster, type: serverType || undefined, limit: '500' });
    draw();
  };
  typeSelect.addEventListener('change', () => {
    type = typeSelect.value;
    opts.onFilter?.({ type, q });
    void load().catch(() => undefined);
  });
  search.addEventListener('input', () => {
    q = search.value;
    opts.onFilter?.({ type, q });
    draw();
  });
  await load();
  const el = h(
    'section',
    { class: 'event-log', 'aria-label': opts.cluster ? `Events of cluster ${opts.cluster}` : 'Events' },
    h('div', { class: 'filters', role: 'search' }, h('label', { class: 'filter' }, h('span', null, 'Type'), typeSelect), h('label', { class: 'filter grow' }, h('span', null, 'Search'), search), status),
    h(
      'div',
      { class: 'log-scroll', tabindex: '0' },
      h('table', { class: 'grid log' }, h('thead', null, h('tr', null, ['Time', 'Type', 'Machine', ...(opts.cluster ? [] : ['Cluster']), 'Message', 'Source'].map((t) => h('th', { scope: 'col' }, t)))), body),
    ),
  );
  return {
    el,
    onEvent(e) {
      if (events.some((x) => x.id === e.id)) return;
      events.push(e);
      if (events.length > KEEP * 2) events = events.slice(-KEEP);
      if (matches(e)) {
        body.prepend(row(e));
        while (body.childElementCount > KEEP) body.lastElementChild?.remove();
        status.textContent = `${events.filter(matches).length} events`;
      }
    },
  };
}

export const eventsView: View = async (ctx, el) => {
  const p = new URLSearchParams(location.hash.split('?')[1] ?? '');
  const names = new Map<string, string>();
  let log: EventLog;
  try {
    for (const m of await api.machines()) if (m.hostname) names.set(m.mac, m.hostname);
    log = await eventLog({
      type: p.get('type') ?? '',
      q: p.get('q') ?? '',
      nameOf: (mac) => names.get(mac),
      onFilter: (f) => {
        const qs = new URLSearchParams();
        if (f.type) qs.set('type', f.type);
        if (f.q) qs.set('q', f.q);
        history.replaceState(null, '', `#/events${qs.size ? `?${qs.toString()}` : ''}`);
      },
    });
  } catch (err) {
    replace(el, h('h1', null, 'Events'), notice('error', errorText(err)));
    return;
  }
  replace(el, h('h1', { tabindex: '-1' }, 'Events'), log.el);
  ctx.live((e) => log.onEvent(e));
};
