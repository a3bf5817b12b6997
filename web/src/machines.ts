import { api, can, errorText, serverHas, type InventoryEvent, type Machine } from './api.js';
import { assignSelection, canIdentify, identifySelection, powerRefusal, powerSelection, reimageSelection, type JobPanel, type PowerAction } from './bulk.js';
import { COLUMNS, matchesSearch, type Column } from './columns.js';
import { h, notice, replace } from './dom.js';
import { elapsed, plural, powerText, STATE_ORDER } from './format.js';
import { debouncer } from './live.js';
import type { View } from './view.js';

/**
 * Every machine in one table: sort by any column, filter by state, role, cluster and rack, search
 * host name, MAC or IP — all kept in the URL (`#/machines?state=failed&rack=r12`), so a view can
 * be bookmarked or sent to a colleague. Only the rows in sight are in the page (the rest are two
 * spacer rows), so 5,000 machines scroll and filter as fast as fifty. Selected machines get bulk
 * actions (bulk.ts).
 */

const ROW_PX = 30;
const OVERSCAN = 12;
const FILTERS = ['state', 'role', 'cluster', 'rack'] as const;
type Filter = (typeof FILTERS)[number];

interface TableState {
  filters: Record<Filter, string>;
  q: string;
  sort: string;
  dir: 'asc' | 'desc';
}

function stateFromHash(): TableState {
  const p = new URLSearchParams(location.hash.split('?')[1] ?? '');
  const dir = p.get('dir') === 'desc' ? 'desc' : 'asc';
  const sort = COLUMNS.some((c) => c.key === p.get('sort')) ? (p.get('sort') as string) : 'rack';
  return { filters: { state: p.get('state') ?? '', role: p.get('role') ?? '', cluster: p.get('cluster') ?? '', rack: p.get('rack') ?? '' }, q: p.get('q') ?? '', sort, dir };
}

function hashOf(s: TableState): string {
  const p = new URLSearchParams();
  for (const f of FILTERS) if (s.filters[f]) p.set(f, s.filters[f]);
  if (s.q) p.set('q', s.q);
  if (s.sort !== 'rack') p.set('sort', s.sort);
  if (s.dir === 'desc') p.set('dir', 'desc');
  const q = p.toString();
  return `#/machines${q ? `?${q}` : ''}`;
}

const sortText = (c: Column, m: Machine): string | number => {
  if (c.sort) return c.sort(m);
  const v = c.cell(m);
  return typeof v === 'string' ? v : (v.textContent ?? '');
};

export const machinesView: View = async (ctx, el) => {
  const st = stateFromHash();
  const machines = new Map<string, Machine>();
  let clusterNames: string[] = [];
  try {
    const [list, clusters] = await Promise.all([api.machines(), api.clusters()]);
    for (const m of list) machines.set(m.mac, m);
    clusterNames = clusters.map((c) => c.name);
  } catch (err) {
    replace(el, h('h1', null, 'Machines'), notice('error', errorText(err)));
    return;
  }
  const identifyServed = await serverHas('post', '/api/v1/machines/{mac}/identify');
  const operator = can(ctx.who.role, 'operator');
  const admin = can(ctx.who.role, 'admin');
  const selected = new Set<string>();
  let shown: Machine[] = [];

  // ── filters ───────────────────────────────────────────────────────────────
  const options = (f: Filter): string[] => {
    if (f === 'state') return STATE_ORDER;
    if (f === 'role') return ['loadbalancer', 'control-plane', 'worker'];
    if (f === 'cluster') return clusterNames;
    return [...new Set([...machines.values()].map((m) => m.rack).filter((r): r is string => r !== null))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  };
  const selects = Object.fromEntries(
    FILTERS.map((f) => {
      const s = h('select', { id: `filter-${f}`, name: f }, h('option', { value: '' }, 'any'), options(f).map((o) => h('option', { value: o, selected: o === st.filters[f] }, o)));
      // A value in the URL that no machine has (yet) stays selectable, so the view says "0 of N".
      if (st.filters[f] && !options(f).includes(st.filters[f])) s.append(h('option', { value: st.filters[f], selected: true }, `${st.filters[f]} (none)`));
      s.addEventListener('change', () => {
        st.filters[f] = s.value;
        refresh();
      });
      return [f, s];
    }),
  ) as Record<Filter, HTMLSelectElement>;
  const search = h('input', { id: 'filter-q', type: 'search', value: st.q, placeholder: 'host, MAC or IP', autocomplete: 'off', spellcheck: 'false' });
  const typing = debouncer(120);
  search.addEventListener('input', () =>
    typing('q', () => {
      st.q = search.value;
      refresh();
    }),
  );
  const count = h('span', { class: 'count', role: 'status', 'data-field': 'count' });
  const clear = h('button', { type: 'button', class: 'link', onclick: () => {
    for (const f of FILTERS) {
      st.filters[f] = '';
      selects[f].value = '';
    }
    st.q = '';
    search.value = '';
    refresh();
  } }, 'Clear filters');
  const filterBar = h(
    'div',
    { class: 'filters', role: 'search', 'aria-label': 'Filter machines' },
    FILTERS.map((f) => h('label', { class: 'filter' }, h('span', null, f[0]?.toUpperCase() + f.slice(1)), selects[f])),
    h('label', { class: 'filter grow' }, h('span', null, 'Search'), search),
    count,
    clear,
  );

  // ── bulk actions ──────────────────────────────────────────────────────────
  const bulkOut = h('div', { class: 'bulk-out', 'aria-live': 'polite' });
  const panels: JobPanel[] = [];
  const picked = (): Machine[] => [...selected].map((mac) => machines.get(mac)).filter((m): m is Machine => m !== undefined);
  const power = (action: PowerAction, force = false): void => {
    const list = picked();
    replace(bulkOut, notice('info', `Power ${action}: starting a job for ${plural(list.length, 'machine')}…`));
    powerSelection(list.map((m) => m.mac), action, force).then(
      (p) => {
        panels.push(p);
        replace(bulkOut, p.el);
      },
      (err: unknown) => replace(bulkOut, powerRefusal(`Power ${action}`, err, () => power(action, true))),
    );
  };
  const bulkBar = h('div', { class: 'bulkbar', role: 'toolbar', 'aria-label': 'Actions on the selected machines', hidden: true });
  const drawBulkBar = (): void => {
    const n = selected.size;
    bulkBar.hidden = n === 0;
    if (n === 0) return;
    const list = picked();
    const identifiable = list.filter(canIdentify).length;
    replace(
      bulkBar,
      h('strong', { 'data-field': 'selected' }, `${plural(n, 'machine')} selected`),
      operator ? (['on', 'off', 'cycle', 'status'] as const).map((a) => h('button', { type: 'button', 'data-bulk': `power-${a}`, onclick: () => power(a) }, a === 'status' ? 'Power status' : `Power ${a}`)) : null,
      operator && identifyServed ? h('button', { type: 'button', 'data-bulk': 'identify', disabled: identifiable === 0, title: identifiable < n ? `${n - identifiable} without a BMC that can` : null, onclick: () => void identifySelection(list, bulkOut) }, `Identify (${identifiable})`) : null,
      operator ? h('button', { type: 'button', class: 'danger', 'data-bulk': 'reimage', onclick: () => reimageSelection(list, bulkOut) }, 'Reimage…') : null,
      admin ? h('button', { type: 'button', 'data-bulk': 'assign', onclick: () => assignSelection(list, clusterNames, bulkOut, (ms) => (ms.forEach((m) => machines.set(m.mac, m)), refresh())) }, 'Assign…') : null,
      h('button', { type: 'button', class: 'link', onclick: () => (selected.clear(), drawBulkBar(), drawRows()) }, 'Clear selection'),
    );
  };

  // ── the table: a header, and only the rows in sight ───────────────────────
  const all = h('input', { type: 'checkbox', 'aria-label': 'Select every machine shown' });
  all.addEventListener('change', () => {
    if (all.checked) for (const m of shown) selected.add(m.mac);
    else for (const m of shown) selected.delete(m.mac);
    drawBulkBar();
    drawRows();
  });
  const headRow = h('tr', null);
  const drawHead = (): void => {
    replace(
      headRow,
      h('th', { class: 'pick', scope: 'col' }, all),
      COLUMNS.map((c) =>
        h(
          'th',
          { scope: 'col', 'aria-sort': st.sort === c.key ? (st.dir === 'asc' ? 'ascending' : 'descending') : null, class: `col-${c.key}` },
          h('button', { type: 'button', class: 'sort', 'data-sort': c.key, onclick: () => {
            st.dir = st.sort === c.key && st.dir === 'asc' ? 'desc' : 'asc';
            st.sort = c.key;
            refresh();
          } }, c.label, st.sort === c.key ? (st.dir === 'asc' ? ' ▲' : ' ▼') : ''),
        ),
      ),
    );
  };
  const body = h('tbody', null);
  const scroller = h('div', { class: 'grid-scroll', tabindex: '0', role: 'region', 'aria-label': 'Machines' }, h('table', { class: 'grid' }, h('thead', null, headRow), body));
  const row = (m: Machine): HTMLElement => {
    const box = h('input', { type: 'checkbox', 'aria-label': `Select ${m.hostname ?? m.mac}`, checked: selected.has(m.mac) });
    box.addEventListener('change', () => {
      if (box.checked) selected.add(m.mac);
      else selected.delete(m.mac);
      drawBulkBar();
    });
    return h('tr', { class: `row state-${m.state}${selected.has(m.mac) ? ' picked' : ''}`, 'data-mac': m.mac }, h('td', { class: 'pick' }, box), COLUMNS.map((c) => h('td', { class: `col-${c.key}${c.mono ? ' mono' : ''}` }, c.cell(m))));
  };
  const spacer = (px: number): HTMLElement => {
    const td = h('td', { colspan: String(COLUMNS.length + 1) });
    td.style.height = `${px}px`;
    return h('tr', { class: 'spacer', 'aria-hidden': 'true' }, td);
  };
  function drawRows(): void {
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW_PX) - OVERSCAN);
    const last = Math.min(shown.length, first + Math.ceil((scroller.clientHeight || 800) / ROW_PX) + 2 * OVERSCAN);
    replace(body, first > 0 ? spacer(first * ROW_PX) : null, shown.slice(first, last).map(row), last < shown.length ? spacer((shown.length - last) * ROW_PX) : null);
    if (shown.length === 0) body.append(h('tr', null, h('td', { colspan: String(COLUMNS.length + 1), class: 'empty' }, machines.size === 0 ? 'No machines yet.' : 'No machine matches these filters.')));
    all.checked = shown.length > 0 && shown.every((m) => selected.has(m.mac));
  }
  let scheduled = false;
  scroller.addEventListener('scroll', () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      drawRows();
    });
  });

  /** Filter and sort everything again, redraw, and keep the URL in step. */
  function refresh(): void {
    const col = COLUMNS.find((c) => c.key === st.sort) ?? (COLUMNS[0] as Column);
    const sign = st.dir === 'asc' ? 1 : -1;
    shown = [...machines.values()]
      .filter((m) => FILTERS.every((f) => !st.filters[f] || (m[f] ?? '') === st.filters[f]) && matchesSearch(m, st.q))
      .map((m) => ({ m, k: sortText(col, m) }))
      .sort((a, b) => sign * (typeof a.k === 'number' && typeof b.k === 'number' ? a.k - b.k : String(a.k).localeCompare(String(b.k), undefined, { numeric: true })) || a.m.mac.localeCompare(b.m.mac))
      .map((x) => x.m);
    count.textContent = `${shown.length} of ${plural(machines.size, 'machine')}`;
    const hash = hashOf(st);
    if (location.hash !== hash) history.replaceState(null, '', hash);
    drawHead();
    drawRows();
  }

  refresh();
  replace(el, h('h1', { tabindex: '-1' }, 'Machines'), filterBar, bulkBar, bulkOut, scroller);

  // ── live ──────────────────────────────────────────────────────────────────
  const soon = debouncer(250);
  const again = debouncer(1500);
  const redraw = debouncer(200);
  const fetchOne = (mac: string): void => {
    api.machine(mac).then(
      (m) => {
        machines.set(mac, m);
        redraw('all', refresh);
      },
      () => {
        machines.delete(mac);
        redraw('all', refresh);
      },
    );
  };
  ctx.live((e: InventoryEvent) => {
    for (const p of panels) p.onEvent(e);
    if (!e.mac) return;
    const mac = e.mac;
    const m = machines.get(mac);
    if (e.type === 'machine.deleted') {
      machines.delete(mac);
      selected.delete(mac);
      redraw('all', refresh);
      return;
    }
    if (m && e.type === 'state' && typeof e.data?.['to'] === 'string') {
      machines.set(mac, { ...m, state: e.data['to'] as Machine['state'], stateChangedAt: e.at });
      redraw('all', refresh);
    }
    soon(mac, () => fetchOne(mac));
    again(mac, () => fetchOne(mac));
  });
  const timer = window.setInterval(() => {
    for (const s of body.querySelectorAll<HTMLElement>('.elapsed[data-since]')) s.textContent = elapsed(s.dataset['since'] ?? null);
    for (const s of body.querySelectorAll<HTMLElement>('.power[data-since]')) {
      const m = machines.get(s.closest('tr')?.getAttribute('data-mac') ?? '');
      if (m) s.textContent = powerText(m.powerState, m.powerStateAt);
    }
  }, 1000);
  ctx.onLeave(() => window.clearInterval(timer));
};
