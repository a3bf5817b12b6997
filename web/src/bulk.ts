import { api, ApiError, errorText, request, type InventoryEvent, type JobItem, type Machine, type PowerJob } from './api.js';
import { h, notice, replace } from './dom.js';
import { plural } from './format.js';
import { select } from './forms.js';

/**
 * Actions on many machines at once — a selection in the table or a whole rack: power through a
 * power job (a few machines at a time, spaced out, as the server's rack jobs do), the locator LED
 * where the server and the BMC have it, reimage with the same confirmation and the same quorum
 * refusals as one machine, and a role or cluster for all of them. Progress is shown live from the
 * event stream; the page polls nothing.
 */

export type PowerAction = 'on' | 'off' | 'cycle' | 'status';

const JOB_ORDER: Record<JobItem['state'], number> = { failed: 0, running: 1, queued: 2, skipped: 3, cancelled: 4, ok: 5 };

/** A live view of one power job: counts, a progress bar, and each machine (trouble first). */
export interface JobPanel {
  readonly el: HTMLElement;
  /** Feed every live event; the panel takes those of its job. */
  onEvent(e: InventoryEvent): void;
}

export function jobPanel(initial: PowerJob, title: string): JobPanel {
  let job = initial;
  const el = h('section', { class: 'job', 'data-job': job.id, 'aria-label': title });
  const render = (): void => {
    const c = job.machines.reduce<Record<string, number>>((acc, i) => ((acc[i.state] = (acc[i.state] ?? 0) + 1), acc), {});
    const done = (c['ok'] ?? 0) + (c['failed'] ?? 0) + (c['skipped'] ?? 0) + (c['cancelled'] ?? 0);
    const parts = (['failed', 'ok', 'running', 'queued', 'skipped', 'cancelled'] as const).filter((k) => (c[k] ?? 0) > 0).map((k) => `${c[k]} ${k}`);
    const items = [...job.machines].sort((a, b) => JOB_ORDER[a.state] - JOB_ORDER[b.state] || (a.hostname ?? a.mac).localeCompare(b.hostname ?? b.mac, undefined, { numeric: true }));
    replace(
      el,
      h('h3', null, title, ' ', h('span', { class: `badge job-${job.state}`, 'data-field': 'job-state' }, job.state === 'running' ? 'running' : job.state)),
      h('p', { class: 'job-summary', role: 'status', 'data-field': 'job-counts' }, `${parts.join(' · ') || 'nothing to do'} — ${done} of ${job.machines.length} done`),
      h('progress', { max: String(Math.max(1, job.machines.length)), value: String(done), 'aria-label': `${done} of ${job.machines.length} done` }),
      h(
        'ul',
        { class: 'job-items' },
        items.map((i) =>
          h(
            'li',
            { class: `job-item job-${i.state}`, 'data-mac': i.mac },
            h('span', { class: 'badge' }, i.state),
            ' ',
            h('a', { href: `#/machines/${i.mac}` }, i.hostname ?? i.mac),
            i.result ? ` — ${i.result}` : '',
            i.error ? h('span', { class: 'job-error' }, ` — ${i.error.code}: ${i.error.message}`) : '',
          ),
        ),
      ),
    );
  };
  const update = (mac: string, patch: Partial<JobItem>): void => {
    job = { ...job, machines: job.machines.map((i) => (i.mac === mac ? { ...i, ...patch } : i)) };
  };
  render();
  // Events of the job before its panel listened (a short job can end before its POST is answered)
  // are not replayed: read the job once now; later events update it from here.
  void api.job(job.id).then(
    (j) => {
      job = j;
      render();
    },
    () => undefined,
  );
  return {
    el,
    onEvent(e) {
      if (e.data?.['job'] !== job.id) return;
      if (e.type === 'power' && e.mac) {
        const outcome = e.data['outcome'];
        if (outcome === 'requested') update(e.mac, { state: 'running' });
        else if (outcome === 'ok') update(e.mac, { state: 'ok', result: typeof e.data['result'] === 'string' ? e.data['result'] : null });
        else if (outcome === 'failed') update(e.mac, { state: 'failed', error: { code: String(e.data['code'] ?? 'ERR'), message: e.message } });
        render();
      } else if ((e.type === 'rack.power' || e.type === 'power.job') && typeof e.data['state'] === 'string') {
        // The job's closing event: read the job once for its exact end.
        void api.job(job.id).then(
          (j) => {
            job = j;
            render();
          },
          () => {
            job = { ...job, state: e.data?.['state'] === 'cancelled' ? 'cancelled' : 'done' };
            render();
          },
        );
      }
    },
  };
}

/**
 * Starts a power job over the machines and returns its live panel (or throws the API's error).
 * `force` skips the preflight and prefetch a power-on runs first (after an operator saw it fail).
 */
export async function powerSelection(macs: readonly string[], action: PowerAction, force = false): Promise<JobPanel> {
  const job = await request<PowerJob>('POST', '/power/jobs', { macs, action, ...(force ? { force: true } : {}) });
  return jobPanel(job, `Power ${action}: ${plural(macs.length, 'machine')}${force ? ' (forced)' : ''}`);
}

export async function powerRack(rack: string, action: PowerAction, force = false): Promise<JobPanel> {
  const job = await request<PowerJob>('POST', `/racks/${encodeURIComponent(rack)}/power`, { action, ...(force ? { force: true } : {}) });
  return jobPanel(job, `Rack ${rack}: power ${action}${force ? ' (forced)' : ''}`);
}

/**
 * A failed power job start, shown as it is; a failed preflight (ERR_PREFLIGHT: an upstream the
 * installers need does not answer) lists each failed check and offers to power on anyway.
 */
export function powerRefusal(what: string, err: unknown, retryForced: () => void): HTMLElement {
  if (!(err instanceof ApiError) || err.code !== 'ERR_PREFLIGHT') return notice('error', `${what} failed: ${errorText(err)}`);
  return h(
    'div',
    { class: 'notice error', role: 'alert', 'data-field': 'preflight-refusal' },
    h('p', null, `${what} refused: the preflight failed, so no machine was powered.`),
    h('ul', null, err.details.map((d) => h('li', null, d.message))),
    h('p', null, 'Fix the upstream (see the cluster page\u2019s Preflight), or power on without the preflight and the installers\u2019 prefetch: '),
    h('button', { type: 'button', class: 'danger', 'data-action': 'power-force', onclick: retryForced }, 'Power on anyway'),
  );
}

/** The locator LED (POST /machines/{mac}/identify) where the BMC supports it. */
export function canIdentify(m: Machine): boolean {
  return m.bmc !== null && m.bmc.identify !== false;
}

/** Runs `fn` for each machine, one at a time, and lists what each answered. */
async function oneByOne(machines: readonly Machine[], out: HTMLElement, what: string, fn: (m: Machine) => Promise<string>): Promise<void> {
  const list = h('ul', { class: 'bulk-results' });
  const status = notice('info', `${what}: 0 of ${machines.length}…`);
  replace(out, status, list);
  let failed = 0;
  for (const [n, m] of machines.entries()) {
    let li: HTMLElement;
    try {
      li = h('li', { class: 'ok', 'data-mac': m.mac }, `${m.hostname ?? m.mac}: ${await fn(m)}`);
    } catch (err) {
      failed++;
      li = h('li', { class: 'failed', 'data-mac': m.mac }, `${m.hostname ?? m.mac}: ${errorText(err)}`);
    }
    list.append(li);
    status.textContent = `${what}: ${n + 1} of ${machines.length}…`;
  }
  status.replaceWith(notice(failed ? 'error' : 'ok', `${what}: ${machines.length - failed} done${failed ? `, ${failed} refused or failed (listed below)` : ''}`));
}

export function identifySelection(machines: readonly Machine[], out: HTMLElement): Promise<void> {
  return oneByOne(machines.filter(canIdentify), out, 'Identify (locator LED on for 5 minutes)', async (m) => {
    await request('POST', `/machines/${m.mac}/identify`, { on: true, seconds: 300 });
    return 'LED on';
  });
}

/**
 * Reimage, after the same confirmation as one machine. One at a time: each reimage takes its node
 * out of its cluster, so the next one's etcd quorum check counts it (the server refuses a control
 * plane that would lose quorum, 409 ERR_QUORUM, and the refusal is listed).
 */
export function reimageSelection(machines: readonly Machine[], out: HTMLElement): void {
  const names = machines.map((m) => m.hostname ?? m.mac);
  const dialog = h(
    'dialog',
    { id: 'confirm-bulk-reimage', 'aria-labelledby': 'bulk-reimage-title' },
    h('h2', { id: 'bulk-reimage-title' }, `Reimage ${plural(machines.length, 'machine')}?`),
    h('p', null, 'Each one\u2019s next boot is set to the network, it is power-cycled and reinstalled; everything on its disk is lost. Each rejoins its cluster afterwards.'),
    h('p', { class: 'names' }, names.slice(0, 30).join(', ') + (names.length > 30 ? `, and ${names.length - 30} more` : '')),
    h('p', null, 'They go one at a time; a control-plane node whose removal would lose etcd quorum is refused, as it is for one machine.'),
    h('form', { method: 'dialog' }, h('button', { type: 'submit', value: 'cancel', autofocus: true }, 'Cancel'), ' ', h('button', { type: 'submit', value: 'reimage', class: 'danger' }, `Reimage ${plural(machines.length, 'machine')}`)),
  );
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (dialog.returnValue !== 'reimage') return;
    void oneByOne(machines, out, 'Reimage', async (m) => {
      const r = await request<{ removal?: string }>('POST', `/machines/${m.mac}/reimage`);
      return r.removal === 'pending' ? 'accepted; it leaves its cluster first' : 'accepted';
    });
  });
  document.body.append(dialog);
  dialog.showModal();
}

/** Role, cluster or rack for every selected machine, in one all-or-none request. */
export function assignSelection(machines: readonly Machine[], clusters: readonly string[], out: HTMLElement, done: (updated: Machine[]) => void): void {
  const keep = '(keep)';
  const form = h(
    'form',
    { method: 'dialog', class: 'assign' },
    select('bulk-role', 'Role', ['loadbalancer', 'control-plane', 'worker'], null, keep),
    select('bulk-cluster', 'Cluster', clusters, null, keep),
    h('p', { class: 'field' }, h('label', { for: 'bulk-rack' }, 'Rack'), h('input', { id: 'bulk-rack', name: 'bulk-rack', placeholder: keep, autocomplete: 'off' })),
    h('p', null, h('button', { type: 'submit', value: 'cancel' }, 'Cancel'), ' ', h('button', { type: 'submit', value: 'assign', class: 'primary' }, `Assign ${plural(machines.length, 'machine')}`)),
  );
  const dialog = h('dialog', { id: 'bulk-assign', 'aria-labelledby': 'bulk-assign-title' }, h('h2', { id: 'bulk-assign-title' }, `Assign ${plural(machines.length, 'machine')}`), form);
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (dialog.returnValue !== 'assign') return;
    const v = new FormData(form);
    const patch: Record<string, string> = {};
    for (const [k, field] of [['role', 'bulk-role'], ['cluster', 'bulk-cluster'], ['rack', 'bulk-rack']] as const) {
      const x = String(v.get(field) ?? '').trim();
      if (x) patch[k] = x;
    }
    if (Object.keys(patch).length === 0) return replace(out, notice('error', 'Nothing to assign: pick a role, a cluster or a rack.'));
    replace(out, notice('info', `Assigning ${plural(machines.length, 'machine')}…`));
    request<{ updated: number; machines: Machine[] }>('PATCH', '/machines', { macs: machines.map((m) => m.mac), patch }).then(
      (r) => {
        replace(out, notice('ok', `Assigned ${plural(r.updated, 'machine')}: ${Object.entries(patch).map(([k, x]) => `${k} ${x}`).join(', ')}`));
        done(r.machines);
      },
      (err: unknown) => replace(out, notice('error', `Nothing was changed: ${errorText(err)}${err instanceof ApiError && err.field ? '' : ''}`)),
    );
  });
  document.body.append(dialog);
  dialog.showModal();
}
