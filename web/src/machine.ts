import { api, can, errorText, request, type InventoryEvent, type Machine } from './api.js';
import { h, notice, replace } from './dom.js';
import { elapsed, label, STATE_HINT, when } from './format.js';
import { debouncer } from './live.js';
import type { View } from './view.js';

/**
 * A machine: its facts, its events (live), power and reimage for operators, edit and delete for
 * admins, and the last orchestration output. Power and reimage go to the API; when the API
 * refuses (a BMC error, an endpoint not there), its message is shown as it is.
 */

/** The disk the last install used, as its installer reported it, and what was asked for. */
function installDisk(m: Machine): string {
  const d = m.installedDisk;
  const asked = m.installDisk ? `asked: ${m.installDisk}` : 'by the cluster\'s rule';
  if (!d) return `not reported yet (${asked})`;
  const what = [d.kind.toUpperCase(), `${(d.sizeBytes / 1e9).toFixed(1)} GB`, d.model, d.serial ? `serial ${d.serial}` : null].filter(Boolean).join(', ');
  return `${d.path} — ${what} (chosen by ${label(d.chosenBy)}, reported ${when(d.reportedAt)})`;
}

function secureBootText(m: Machine): string {
  const marked = m.secureBoot === null ? 'not marked' : m.secureBoot ? 'marked on' : 'marked off';
  const seen = m.secureBootSeen === null ? 'not seen yet' : m.secureBootSeen === 'enforced' ? 'seen enforced (signed GRUB in lockdown)' : 'seen off (iPXE ran)';
  return `${marked}; ${seen}`;
}

function bootLoaderText(m: Machine): string {
  const setting = m.bootLoader ?? 'site default';
  const last = m.boot?.lastLoader ? `; last served ${m.boot.lastLoader} (${label(m.boot.bootfile)})` : '';
  return `${setting}${last}`;
}

function facts(m: Machine): HTMLElement {
  const rows: [string, string | Node][] = [
    ['MAC', m.mac],
    ['Host name', label(m.hostname)],
    ['Role', label(m.role)],
    ['Cluster', m.cluster ? h('a', { href: `#/clusters/${m.cluster}` }, m.cluster) : '—'],
    ['Rack', m.rack ? `${m.rack}${m.unit !== null ? `, unit ${m.unit}` : ''}` : '—'],
    ['IP', label(m.ip)],
    ['State', `${m.state} — ${STATE_HINT[m.state] ?? ''} (for ${elapsed(m.stateChangedAt)})`],
    ['Boot step', label(m.lastStep)],
    ['Install disk', installDisk(m)],
    ['Power', m.powerState ? `${m.powerState} (read ${elapsed(m.powerStateAt)} ago, ${when(m.powerStateAt)})` : 'unknown (no BMC call yet)'],
    ...(m.failure ? ([['Failure', `from ${label(m.failure.from)} at ${label(m.failure.step)}: ${label(m.failure.reason)}`]] as [string, string][]) : []),
    ['Firmware / arch', `${label(m.firmware)} / ${label(m.arch)}`],
    ['Secure Boot', secureBootText(m)],
    ['Boot loader', bootLoaderText(m)],
    ...(m.boot?.stuck ? ([['Stuck', `${m.boot.stuck.message} (since ${elapsed(m.boot.stuck.since)})`]] as [string, string][]) : []),
    ['Vendor class', label(m.vendorClass)],
    ['UUID', label(m.uuid)],
    ['BMC', m.bmc ? `${m.bmc.driver} ${m.bmc.address}${m.bmc.port ? `:${m.bmc.port}` : ''}${m.bmc.systemId ? ` system ${m.bmc.systemId}` : ''}, user ${m.bmc.username}, password ${m.bmc.passwordSet ? 'set' : 'not set'}` : 'none'],
    ...(m.bmcFacts ? ([['BMC reports', bmcFacts(m)]] as [string, string | Node][]) : []),
    ['SSH host keys', m.hostKeys.length ? m.hostKeys.join(', ') : 'not pinned yet'],
    ['First seen', when(m.firstSeen)],
    ['Last seen', when(m.lastSeen)],
  ];
  return h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', { 'data-fact': k }, v)]));
}

/** What the BMC said at the last status call; a MAC it does not report is the sheet/rack mismatch a tech must fix. */
function bmcFacts(m: Machine): HTMLElement {
  const f = m.bmcFacts;
  if (!f) return h('span', null, '—');
  const text = [f.manufacturer, f.model, f.serial ? `serial ${f.serial}` : null, f.biosVersion ? `BIOS ${f.biosVersion}` : null, f.firmwareVersion ? `BMC firmware ${f.firmwareVersion}` : null].filter(Boolean).join(', ') || 'nothing';
  return h(
    'span',
    null,
    `${text} (${when(f.collectedAt)})`,
    f.macReported === false
      ? h('strong', { class: 'warning', 'data-flag': 'bmc-mac-mismatch' }, ` — this BMC does not report ${m.mac}; it reports ${(f.nics ?? []).join(', ')}: check the cabling and the sheet`)
      : null,
  );
}

interface ConsoleJson {
  attached: boolean;
  state: string;
  reason: string | null;
  lines: { seq: number; text: string }[];
}

/** The captured serial console, polled while racksmith holds it (and once otherwise). */
function consoleBox(mac: string, operator: boolean, onLeave: (fn: () => void) => void): HTMLElement {
  const pre = h('pre', { tabindex: '0', 'aria-label': 'serial console', 'data-field': 'console' });
  const status = h('p', { 'data-field': 'console-state' }, 'Loading…');
  const detach = h('button', { type: 'button', 'data-action': 'console-detach', hidden: true }, 'Detach console (free the SOL session for me)');
  let after = 0;
  let lines: string[] = [];
  let timer: ReturnType<typeof setTimeout> | null = null;
  let gone = false;
  async function poll(): Promise<void> {
    try {
      const c = await request<ConsoleJson>('GET', `/machines/${mac}/console?after=${after}`);
      for (const l of c.lines) {
        after = Math.max(after, l.seq);
        lines.push(l.text);
      }
      lines = lines.slice(-200);
      pre.textContent = lines.length ? lines.join('\n') : '(no lines captured)';
      status.textContent = c.attached ? 'Live: racksmith holds the SOL session.' : `Capture ${c.state}${c.reason ? `: ${c.reason}` : ''}.`;
      detach.hidden = !(operator && c.attached);
      if (!gone) timer = setTimeout(() => void poll(), c.attached ? 2000 : 15000);
    } catch (err) {
      status.textContent = `Console: ${errorText(err)}`;
    }
  }
  detach.onclick = () => {
    request('POST', `/machines/${mac}/console`, { action: 'detach' }).then(() => void poll(), (err: unknown) => (status.textContent = `Detach failed: ${errorText(err)}`));
  };
  onLeave(() => {
    gone = true;
    if (timer) clearTimeout(timer);
  });
  void poll();
  return h('div', null, status, detach, pre);
}

function eventItem(e: InventoryEvent): HTMLElement {
  return h(
    'li',
    { 'data-event': e.id },
    h('time', { datetime: e.at }, when(e.at)),
    ' ',
    h('span', { class: 'type' }, e.type),
    ' ',
    h('span', { class: 'message' }, e.message),
    e.source ? h('span', { class: 'source' }, ` (from ${e.source})`) : null,
  );
}

/** The newest orchestration event, with any command output it carries. */
function orchestration(events: readonly InventoryEvent[]): HTMLElement {
  const last = [...events].reverse().find((e) => e.type.startsWith('orchestration'));
  if (!last) return h('p', { id: 'orchestration' }, 'No orchestration output yet.');
  const d = last.data ?? {};
  const output = ['output', 'stdout', 'stderr'].map((k) => d[k]).filter((v): v is string => typeof v === 'string' && v !== '');
  return h(
    'div',
    { id: 'orchestration' },
    h('p', null, `${when(last.at)} — ${last.message}`),
    output.length ? h('pre', { tabindex: '0', 'aria-label': 'command output' }, output.join('\n')) : null,
  );
}

export const machineView: View = async (ctx, el) => {
  const mac = ctx.params[0] ?? '';
  let m: Machine;
  let events: InventoryEvent[];
  try {
    [m, events] = await Promise.all([api.machine(mac), api.events(mac)]);
  } catch (err) {
    replace(el, h('h1', null, 'Machine'), notice('error', errorText(err)), h('p', null, h('a', { href: '#/' }, 'Back to the racks')));
    return;
  }
  const result = h('div', { class: 'result', 'aria-live': 'polite' });
  const show = (kind: 'ok' | 'error', text: string): void => replace(result, notice(kind, text));

  async function act(what: string, path: string, body?: unknown): Promise<void> {
    replace(result, notice('info', `${what}…`));
    try {
      const r = await request<unknown>('POST', path, body);
      show('ok', `${what}: done${r && typeof r === 'object' ? ` — ${JSON.stringify(r)}` : ''}`);
    } catch (err) {
      show('error', `${what} failed: ${errorText(err)}`);
    }
  }

  const confirmDialog = h(
    'dialog',
    { id: 'confirm-reimage', 'aria-labelledby': 'confirm-title' },
    h('h2', { id: 'confirm-title' }, `Reimage ${m.hostname ?? m.mac}?`),
    h('p', null, 'Its next boot is set to the network, it is power-cycled and reinstalled; everything on its disk is lost. It rejoins its cluster afterwards.'),
    h(
      'form',
      { method: 'dialog' },
      h('button', { type: 'submit', value: 'cancel', autofocus: true }, 'Cancel'),
      ' ',
      h('button', { type: 'submit', value: 'reimage', class: 'danger' }, 'Reimage'),
    ),
  );
  confirmDialog.addEventListener('close', () => {
    if (confirmDialog.returnValue === 'reimage') void act('Reimage', `/machines/${m.mac}/reimage`);
  });

  const deleteDialog = h(
    'dialog',
    { id: 'confirm-delete', 'aria-labelledby': 'delete-title' },
    h('h2', { id: 'delete-title' }, `Delete ${m.hostname ?? m.mac} from the inventory?`),
    h('p', null, 'Its role, secrets and history go; if it boots again it shows up as discovered.'),
    h('form', { method: 'dialog' }, h('button', { type: 'submit', value: 'cancel', autofocus: true }, 'Cancel'), ' ', h('button', { type: 'submit', value: 'delete', class: 'danger' }, 'Delete')),
  );
  deleteDialog.addEventListener('close', () => {
    if (deleteDialog.returnValue !== 'delete') return;
    request('DELETE', `/machines/${m.mac}`).then(
      () => ctx.navigate('#/'),
      (err: unknown) => show('error', `Delete failed: ${errorText(err)}`),
    );
  });

  const operator = can(ctx.who.role, 'operator');
  const admin = can(ctx.who.role, 'admin');
  const actions = h(
    'div',
    { class: 'actions' },
    operator
      ? h(
          'fieldset',
          { class: 'power' },
          h('legend', null, 'Power (through the BMC)'),
          (['on', 'off', 'cycle', 'status'] as const).map((a) =>
            h('button', { type: 'button', 'data-action': `power-${a}`, onclick: () => void act(`Power ${a}`, `/machines/${m.mac}/power`, { action: a }) }, a === 'status' ? 'Power status' : `Power ${a}`),
          ),
        )
      : null,
    operator
      ? h(
          'fieldset',
          { class: 'identify' },
          h('legend', null, 'Locator LED'),
          h('button', { type: 'button', 'data-action': 'identify-on', onclick: () => void act('Locator LED on for 10 minutes', `/machines/${m.mac}/identify`, { on: true, seconds: 600 }) }, 'Blink (10 min)'),
          h('button', { type: 'button', 'data-action': 'identify-off', onclick: () => void act('Locator LED off', `/machines/${m.mac}/identify`, { on: false }) }, 'Off'),
        )
      : null,
    operator ? h('button', { type: 'button', class: 'danger', 'data-action': 'reimage', onclick: () => confirmDialog.showModal() }, 'Reimage…') : null,
    admin ? h('a', { class: 'button', href: `#/machines/${m.mac}/edit`, 'data-action': 'edit' }, 'Edit') : null,
    admin ? h('button', { type: 'button', class: 'danger', 'data-action': 'delete', onclick: () => deleteDialog.showModal() }, 'Delete…') : null,
  );

  const timeline = h('ol', { class: 'events', reversed: true }, [...events].reverse().map(eventItem));
  const factsBox = h('div', null, facts(m));
  const orchBox = h('div', null, orchestration(events));
  const heading = h('h1', { tabindex: '-1' }, m.hostname ?? m.mac, ' ', h('span', { class: `badge state-${m.state}`, 'data-field': 'state' }, m.state));
  const crumbs = (): HTMLElement => h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Racks'), m.rack ? ` › rack ${m.rack}` : '', ' › ', m.hostname ?? m.mac);
  let crumbBox = crumbs();
  replace(
    el,
    crumbBox,
    heading,
    actions,
    result,
    confirmDialog,
    deleteDialog,
    h('section', { 'aria-labelledby': 'facts-h' }, h('h2', { id: 'facts-h' }, 'Facts'), factsBox),
    m.bmc?.driver === 'ipmi' ? h('section', { 'aria-labelledby': 'console-h' }, h('h2', { id: 'console-h' }, 'Serial console'), consoleBox(m.mac, operator, ctx.onLeave)) : null,
    h('section', { 'aria-labelledby': 'orch-h' }, h('h2', { id: 'orch-h' }, 'Last orchestration output'), orchBox),
    h('section', { 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, 'Events'), timeline),
  );

  const later = debouncer(250);
  ctx.live((e) => {
    if (e.mac !== m.mac) return;
    if (e.type === 'machine.deleted') {
      show('error', 'This machine was deleted.');
      return;
    }
    events.push(e);
    timeline.prepend(eventItem(e));
    replace(orchBox, orchestration(events));
    later('m', () => {
      api.machine(m.mac).then((fresh) => {
        m = fresh;
        replace(factsBox, facts(m));
        const next = crumbs();
        crumbBox.replaceWith(next);
        crumbBox = next;
        const badge = heading.querySelector('[data-field="state"]');
        if (badge) {
          badge.textContent = m.state;
          badge.className = `badge state-${m.state}`;
        }
      }, () => undefined);
    });
  });
};
