import { api, can, errorText, type InventoryEvent, type Machine } from './api.js';
import { powerRack, powerRefusal, type JobPanel, type PowerAction } from './bulk.js';
import { h, notice, replace } from './dom.js';
import { bootSummary, elapsed, label, plural, powerText, STATE_HINT, STATE_ORDER } from './format.js';
import { debouncer } from './live.js';
import type { View } from './view.js';

/**
 * The rack view: machines grouped by rack, each rack in rack-unit order when the sheet gave units
 * (the top of the rack first, as it stands in the row), one tile each with host name, role, state,
 * current boot step, firmware/arch/boot loader/Secure Boot as seen, time in state and the last
 * known power state. Each rack's header counts its machines by state, failures first; racks with a
 * failed machine come first. State events update a tile at once; every event then re-reads that
 * machine (debounced) for its step, host name, rack and power state. Operators power a whole rack
 * from its header and watch the job live.
 */

function tile(m: Machine): HTMLElement {
  const name = m.hostname ?? m.mac;
  return h(
    'li',
    { class: `tile state-${m.state}`, 'data-mac': m.mac },
    h(
      'a',
      { href: `#/machines/${m.mac}`, 'aria-label': `${name}: ${m.state}${m.lastStep ? `, step ${m.lastStep}` : ''}, power ${m.powerState ?? 'unknown'}` },
      h('span', { class: 'head' }, h('span', { class: 'host' }, name), m.unit !== null ? h('span', { class: 'unit' }, `U${m.unit}`) : null),
      h('span', { class: 'role' }, label(m.role)),
      h('span', { class: 'state' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { 'data-field': 'state' }, m.state)),
      h('span', { class: 'step' }, 'boot step: ', h('span', { 'data-field': 'step' }, label(m.lastStep))),
      h('span', { class: 'boot', 'data-field': 'boot' }, bootSummary(m)),
      h('span', { class: 'for' }, 'in state for ', h('span', { 'data-field': 'elapsed', 'data-since': m.stateChangedAt }, elapsed(m.stateChangedAt))),
      h('span', { class: `power power-${m.powerState ?? 'unknown'}` }, 'power ', h('span', { 'data-field': 'power', 'data-state': m.powerState ?? '', 'data-at': m.powerStateAt ?? '' }, powerText(m.powerState, m.powerStateAt))),
      h('span', { class: 'hint' }, m.state === 'failed' && m.failure ? `failed at ${label(m.failure.step)}: ${label(m.failure.reason)}` : m.boot?.stuck ? m.boot.stuck.message : (STATE_HINT[m.state] ?? '')),
    ),
  );
}

function rackKey(m: Machine): string {
  return m.rack ?? '';
}

/** Top of the rack first; machines without a unit after them, failed ones first, then by name. */
function rackOrder(a: Machine, b: Machine): number {
  if (a.unit !== null || b.unit !== null) return (b.unit ?? -1) - (a.unit ?? -1);
  return Number(b.state === 'failed') - Number(a.state === 'failed') || (a.hostname ?? a.mac).localeCompare(b.hostname ?? b.mac, undefined, { numeric: true });
}

/** "2 failed · 10 joined · 1 provisioning", trouble first. */
function stateCounts(list: readonly Machine[]): HTMLElement {
  const counts = new Map<string, number>();
  for (const m of list) counts.set(m.state, (counts.get(m.state) ?? 0) + 1);
  return h(
    'span',
    { class: 'counts', 'data-field': 'counts' },
    STATE_ORDER.filter((s) => counts.has(s)).map((s) => h('span', { class: `badge state-${s}`, 'data-state': s }, `${counts.get(s)} ${s}`)),
  );
}

export const racksView: View = async (ctx, el) => {
  const machines = new Map<string, Machine>();
  const operator = can(ctx.who.role, 'operator');
  /** Each rack's live job panel, kept across redraws. */
  const jobs = new Map<string, { panel: JobPanel; box: HTMLElement }>();

  const powerDialog = (rack: string, count: number): void => {
    const box = jobs.get(rack)?.box ?? h('div', { class: 'rack-job', 'aria-live': 'polite' });
    const dialog = h(
      'dialog',
      { id: 'rack-power', 'aria-labelledby': 'rack-power-title' },
      h('h2', { id: 'rack-power-title' }, `Power rack ${rack}`),
      h('p', null, `${plural(count, 'machine')}, a few at a time with a pause between starts (the server's rack-power settings), so the PDU and DHCP see no stampede.`),
      h(
        'form',
        { method: 'dialog' },
        h('button', { type: 'submit', value: 'cancel', autofocus: true }, 'Cancel'),
        ' ',
        (['status', 'on', 'cycle', 'off'] as const).map((a) => [h('button', { type: 'submit', value: a, class: a === 'off' || a === 'cycle' ? 'danger' : '' }, a === 'status' ? 'Read power status' : `Power ${a}`), ' ']),
      ),
    );
    const start = (action: PowerAction, force: boolean): void => {
      replace(box, notice('info', `Rack ${rack}: starting power ${action}…`));
      jobs.set(rack, { panel: { el: box, onEvent: () => undefined }, box });
      render();
      powerRack(rack, action, force).then(
        (panel) => {
          jobs.set(rack, { panel, box });
          replace(box, panel.el);
        },
        (err: unknown) => replace(box, powerRefusal(`Rack ${rack}: power ${action}`, err, () => start(action, true))),
      );
    };
    dialog.addEventListener('close', () => {
      dialog.remove();
      const action = dialog.returnValue as PowerAction | 'cancel' | '';
      if (action === 'cancel' || action === '') return;
      start(action, false);
    });
    document.body.append(dialog);
    dialog.showModal();
  };

  const render = (): void => {
    const byRack = new Map<string, Machine[]>();
    for (const m of machines.values()) {
      const list = byRack.get(rackKey(m)) ?? [];
      list.push(m);
      byRack.set(rackKey(m), list);
    }
    const failedIn = (r: string): number => (byRack.get(r) ?? []).filter((m) => m.state === 'failed').length;
    const racks = [...byRack.keys()].sort((a, b) => (a === '' ? 1 : b === '' ? -1 : Number(failedIn(b) > 0) - Number(failedIn(a) > 0) || a.localeCompare(b, undefined, { numeric: true })));
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
        const list = (byRack.get(r) ?? []).sort(rackOrder);
        const title = r === '' ? 'No rack' : `Rack ${r}`;
        return h(
          'section',
          { class: `rack${failedIn(r) > 0 ? ' has-failed' : ''}`, 'aria-label': title, 'data-rack': r },
          h(
            'header',
            { class: 'rack-head' },
            h('h2', null, title, h('span', { class: 'count' }, ` · ${plural(list.length, 'machine')}`)),
            stateCounts(list),
            h('span', { class: 'rack-actions' }, r !== '' ? h('a', { href: `#/machines?rack=${encodeURIComponent(r)}` }, 'In the table') : null, operator && r !== '' ? h('button', { type: 'button', 'data-action': 'rack-power', onclick: () => powerDialog(r, list.length) }, 'Power rack…') : null),
          ),
          jobs.get(r)?.box ?? null,
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
  const relayout = debouncer(150);
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
        // A move, or a state that changes the rack's counts or order: lay the racks out again.
        if (before && t && rackKey(before) === rackKey(m) && before.unit === m.unit && before.state === m.state) t.replaceWith(tile(m));
        else relayout('all', render);
      },
      () => {
        machines.delete(mac);
        relayout('all', render);
      },
    );
  };

  ctx.live((e: InventoryEvent) => {
    for (const j of jobs.values()) j.panel.onEvent(e);
    if (!e.mac) return;
    const m = machines.get(e.mac);
    if (e.type === 'machine.deleted') {
      machines.delete(e.mac);
      relayout('all', render);
      return;
    }
    if (m && e.type === 'state' && typeof e.data?.['to'] === 'string') {
      machines.set(e.mac, { ...m, state: e.data['to'] as Machine['state'], stateChangedAt: e.at });
      relayout('all', render);
    }
    reload(e.mac);
  });

  const timer = window.setInterval(() => {
    for (const s of el.querySelectorAll<HTMLElement>('[data-field="elapsed"]')) s.textContent = elapsed(s.dataset['since'] ?? null);
    for (const s of el.querySelectorAll<HTMLElement>('[data-field="power"]')) s.textContent = powerText(s.dataset['state'] || null, s.dataset['at'] || null);
  }, 1000);
  ctx.onLeave(() => window.clearInterval(timer));
};
