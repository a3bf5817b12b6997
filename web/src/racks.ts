import { api, can, errorText, type InventoryEvent, type Machine } from './api.js';
import { h, notice, replace } from './dom.js';
import { bootSummary, elapsed, label, STATE_HINT } from './format.js';
import { debouncer } from './live.js';
import type { View } from './view.js';

/**
 * The rack view: machines grouped by rack, one tile each with host name, role, state, current
 * boot step, firmware/arch/boot loader/Secure Boot as seen, and time in state. State events update a tile at once; every event then re-reads
 * that machine (debounced) for its step, host name and rack.
 */

function tile(m: Machine): HTMLElement {
  const name = m.hostname ?? m.mac;
  return h(
    'li',
    { class: `tile state-${m.state}`, 'data-mac': m.mac },
    h(
      'a',
      { href: `#/machines/${m.mac}`, 'aria-label': `${name}: ${m.state}${m.lastStep ? `, step ${m.lastStep}` : ''}` },
      h('span', { class: 'host' }, name),
      h('span', { class: 'role' }, label(m.role)),
      h('span', { class: 'state' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { 'data-field': 'state' }, m.state)),
      h('span', { class: 'step' }, 'boot step: ', h('span', { 'data-field': 'step' }, label(m.lastStep))),
      h('span', { class: 'boot', 'data-field': 'boot' }, bootSummary(m)),
      h('span', { class: 'for' }, 'in state for ', h('span', { 'data-field': 'elapsed', 'data-since': m.stateChangedAt }, elapsed(m.stateChangedAt))),
      h('span', { class: 'hint' }, m.state === 'failed' && m.failure ? `failed at ${label(m.failure.step)}: ${label(m.failure.reason)}` : m.boot?.stuck ? m.boot.stuck.message : (STATE_HINT[m.state] ?? '')),
    ),
  );
}

function rackKey(m: Machine): string {
  return m.rack ?? '';
}

export const racksView: View = async (ctx, el) => {
  const machines = new Map<string, Machine>();
  const render = (): void => {
    const byRack = new Map<string, Machine[]>();
    for (const m of machines.values()) {
      const list = byRack.get(rackKey(m)) ?? [];
      list.push(m);
      byRack.set(rackKey(m), list);
    }
    const racks = [...byRack.keys()].sort((a, b) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b, undefined, { numeric: true })));
    replace(
      el,
      h('h1', { tabindex: '-1' }, 'Racks'),
      machines.size === 0
        ? h(
            'p',
            null,
            'No machines yet. ',
            can(ctx.who.role, 'admin') ? [h('a', { href: '#/import' }, 'Import a rack from CSV'), ' or ', h('a', { href: '#/machines/new' }, 'add a machine'), '.'] : 'An admin adds them.',
          )
        : null,
      racks.map((r) => {
        const list = (byRack.get(r) ?? []).sort((a, b) => (a.hostname ?? a.mac).localeCompare(b.hostname ?? b.mac, undefined, { numeric: true }));
        const title = r === '' ? 'No rack' : `Rack ${r}`;
        return h(
          'section',
          { class: 'rack', 'aria-label': title, 'data-rack': r },
          h('h2', null, title, h('span', { class: 'count' }, ` · ${list.length} machine${list.length === 1 ? '' : 's'}`)),
          h('ul', { class: 'tiles' }, list.map(tile)),
        );
      }),
    );
  };

  try {
    for (const m of await api.machines()) machines.set(m.mac, m);
  } catch (err) {
    replace(el, h('h1', null, 'Racks'), notice('error', errorText(err)));
    return;
  }
  render();

  // Services set a machine's boot step just after appending its event, so read the machine soon
  // after a burst, and once more a little later for a step set after the last event.
  const soon = debouncer(250);
  const again = debouncer(1500);
  const reload = (mac: string): void => {
    soon(mac, () => fetchTile(mac));
    again(mac, () => fetchTile(mac));
  };
  const fetchTile = (mac: string): void => {
    api.machine(mac).then(
      (m) => {
        const before = machines.get(mac);
        machines.set(mac, m);
        const t = el.querySelector(`[data-mac="${CSS.escape(mac)}"]`);
        if (before && t && rackKey(before) === rackKey(m)) t.replaceWith(tile(m));
        else render();
      },
      () => {
        machines.delete(mac);
        render();
      },
    );
  };

  ctx.live((e: InventoryEvent) => {
    if (!e.mac) return;
    const m = machines.get(e.mac);
    if (e.type === 'machine.deleted') {
      machines.delete(e.mac);
      render();
      return;
    }
    if (m && e.type === 'state' && typeof e.data?.['to'] === 'string') {
      m.state = e.data['to'];
      m.stateChangedAt = e.at;
      el.querySelector(`[data-mac="${CSS.escape(e.mac)}"]`)?.replaceWith(tile(m));
    }
    reload(e.mac);
  });

  const timer = window.setInterval(() => {
    for (const s of el.querySelectorAll<HTMLElement>('[data-field="elapsed"]')) s.textContent = elapsed(s.dataset['since'] ?? null);
  }, 1000);
  ctx.onLeave(() => window.clearInterval(timer));
};
