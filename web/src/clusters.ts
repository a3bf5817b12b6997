import { api, can, errorText, request, type Cluster, type PreflightReport, type Step } from './api.js';
import { eventLog } from './events.js';
import { h, notice, replace } from './dom.js';
import { label } from './format.js';
import { field, select, showError, values } from './forms.js';
import { debouncer } from './live.js';
import type { View } from './view.js';

/** Clusters: the list, one cluster with its plan's steps, and the form to create one. */

export const clustersView: View = async (ctx, el) => {
  let list: Cluster[];
  try {
    list = await api.clusters();
  } catch (err) {
    replace(el, h('h1', null, 'Clusters'), notice('error', errorText(err)));
    return;
  }
  replace(
    el,
    h('h1', { tabindex: '-1' }, 'Clusters'),
    can(ctx.who.role, 'admin') ? h('p', null, h('a', { class: 'button', href: '#/clusters/new' }, 'New cluster')) : null,
    list.length === 0
      ? h('p', null, 'No clusters yet.')
      : h(
          'table',
          null,
          h('thead', null, h('tr', null, ['Name', 'State', 'Machines', 'Ubuntu', 'Kubernetes', 'Runtime', 'CNI', 'Endpoint'].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            null,
            list.map((c) =>
              h(
                'tr',
                null,
                h('td', null, h('a', { href: `#/clusters/${c.name}` }, c.name)),
                h('td', null, h('span', { class: `badge cstate-${c.state}` }, c.state)),
                h('td', null, String(c.machineCount)),
                h('td', null, `${label(c.os ?? c.ubuntuRelease)} (${label(c.installMethod)})`),
                h('td', null, c.kubernetesVersion),
                h('td', null, c.containerRuntime),
                h('td', null, c.cni),
                h('td', null, label(c.controlPlaneEndpoint)),
              ),
            ),
          ),
        ),
  );
};

/** "1m05s": how long a step took (or has been running). */
function took(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '—';
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
}

/**
 * The orchestration steps as a timeline: each step's bar spans its start to its end (or now,
 * while it runs) on one time axis from the first start, so waits and slow joins show.
 */
function timeline(steps: readonly Step[], now = Date.now()): HTMLElement {
  const times = steps.flatMap((s) => [s.startedAt, s.endedAt].filter((t): t is string => t !== null).map(Date.parse));
  const t0 = times.length ? Math.min(...times) : now;
  const t1 = Math.max(now * Number(steps.some((s) => s.state === 'running')), ...times, t0 + 1000);
  const span = t1 - t0;
  const row = (s: Step, i: number): HTMLElement => {
    const start = s.startedAt ? Date.parse(s.startedAt) : null;
    const end = s.endedAt ? Date.parse(s.endedAt) : s.state === 'running' ? now : null;
    const seconds = s.seconds ?? (start !== null && end !== null ? (end - start) / 1000 : null);
    const bar = h('span', { class: `bar sstate-${s.state}`, title: `${s.id}: ${s.state}${seconds !== null ? `, ${took(seconds)}` : ''}` });
    if (start !== null) {
      bar.style.setProperty('left', `${(((start - t0) / span) * 100).toFixed(2)}%`);
      bar.style.setProperty('width', `${Math.max(0.6, (((end ?? start) - start) / span) * 100).toFixed(2)}%`);
    } else bar.hidden = true;
    return h(
      'tr',
      { 'data-step': s.id, class: `sstate-${s.state}` },
      h('td', { class: 'num' }, String(i + 1)),
      h('td', { class: 'mono' }, s.id),
      h('td', null, s.machine ?? '—'),
      h('td', null, h('span', { class: `badge sstate-${s.state}` }, s.state), s.attempts > 1 ? ` (try ${s.attempts})` : ''),
      h('td', { class: 'num', 'data-field': 'took' }, took(seconds)),
      h('td', { class: 'track' }, bar),
      h('td', { class: 'detail' }, s.error ?? ''),
    );
  };
  return h(
    'table',
    { class: 'steps grid' },
    h('thead', null, h('tr', null, ['#', 'Step', 'Machine', 'State', 'Took', `Timeline (${took(span / 1000)} from the first start)`, 'Error'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, steps.map(row)),
  );
}

export const clusterView: View = async (ctx, el) => {
  const name = ctx.params[0] ?? '';
  const result = h('div', { 'aria-live': 'polite' });

  async function download(): Promise<void> {
    try {
      const res = await fetch(`/api/v1/clusters/${encodeURIComponent(name)}/kubeconfig`, { credentials: 'same-origin' });
      if (!res.ok) {
        const body = (await res.json().catch(() => null)) as { error?: { message?: string; code?: string } } | null;
        throw new Error(body?.error ? `${body.error.message ?? ''} (${body.error.code ?? res.status})` : `${res.status} ${res.statusText}`);
      }
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: `${name}.kubeconfig` });
      document.body.append(a);
      a.click();
      a.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
      replace(result, notice('ok', `Downloaded ${name}.kubeconfig`));
    } catch (err) {
      replace(result, notice('error', `Kubeconfig: ${errorText(err)}`));
    }
  }

  /** Every upstream the cluster's machines will use, checked from racksmith's host: one row per check. */
  async function preflight(): Promise<void> {
    replace(result, notice('info', 'Checking every upstream the machines will use…'));
    try {
      const r = await request<PreflightReport>('POST', `/clusters/${encodeURIComponent(name)}/preflight`);
      const failed = r.checks.filter((x) => x.state === 'failed').length;
      replace(
        result,
        notice(r.ok ? 'ok' : 'error', r.ok ? `Preflight passed: ${r.checks.length} checks` : `Preflight: ${failed} of ${r.checks.length} checks failed`),
        h(
          'table',
          { class: 'preflight' },
          h('thead', null, h('tr', null, ['Check', 'State', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', null, r.checks.map((x) => h('tr', { 'data-check': x.id }, h('td', null, x.title), h('td', { class: `state-${x.state}` }, x.state), h('td', null, x.url && x.state !== 'skipped' ? `${x.detail} (${x.url})` : x.detail)))),
        ),
      );
    } catch (err) {
      replace(result, notice('error', `Preflight: ${errorText(err)}`));
    }
  }

  let c: Cluster;
  try {
    c = await api.cluster(name);
  } catch (err) {
    replace(el, h('h1', null, `Cluster ${name}`), notice('error', errorText(err)));
    return;
  }
  const badge = h('span', { class: `badge cstate-${c.state}`, 'data-field': 'state' }, c.state);
  const live = h('div', null);
  const members = new Set<string>();

  /** The parts that change while a cluster is built; rebuilt in place, so focus on the buttons stays. */
  function fill(cl: Cluster): void {
    badge.textContent = cl.state;
    badge.className = `badge cstate-${cl.state}`;
    const steps = cl.steps ?? [];
    const waiting = cl.orchestration?.waiting ?? [];
    const machines = cl.machines ?? [];
    members.clear();
    for (const m of machines) members.add(m.mac);
    replace(
      live,
      h('div', { class: 'warnings', 'data-field': 'warnings' }, (cl.warnings ?? []).map((w) => notice('warning', w))),
      h(
        'dl',
        { class: 'facts' },
        [
          ['OS', label(cl.os ?? cl.ubuntuRelease)],
          ['Install method', label(cl.installMethod)],
          ['Install disk rule', label(cl.installDiskRule)],
          ...(cl.installMethod === 'image' ? [['Image', label(cl.imageUrl) === '—' ? 'the distribution\'s cloud image (or the images setting)' : label(cl.imageUrl)]] : []),
          ['Kubernetes', cl.kubernetesVersion],
          ['Container runtime', cl.containerRuntime],
          ['CNI', cl.cni],
          ['Pod subnet', cl.podSubnet],
          ['Service subnet', cl.serviceSubnet],
          ['Control-plane endpoint', label(cl.controlPlaneEndpoint)],
          ['API virtual IP', cl.vip ? `${cl.vip} (a load-balancer pair, keepalived)` : '—'],
        ].map(([k, v]) => [h('dt', null, k ?? ''), h('dd', null, v ?? '')]),
      ),
      cl.upgrade ? upgradeSection(cl.upgrade) : null,
      h('h2', null, 'Orchestration'),
      waiting.length
        ? h('div', { class: 'waiting', role: 'status', 'data-field': 'waiting' }, h('strong', null, 'Waiting: '), h('ul', null, waiting.map((w) => h('li', null, w))))
        : null,
      steps.length === 0 ? h('p', null, 'No orchestration steps yet: the plan starts once its machines have phoned home.') : timeline(steps),
      h('h2', null, 'Machines'),
      machines.length === 0
        ? h('p', null, 'No machines in this cluster yet.')
        : h(
            'ul',
            { class: 'members' },
            machines.map((m) => h('li', null, h('a', { href: `#/machines/${m.mac}` }, m.hostname ?? m.mac), ` — ${label(m.role)}, `, h('span', { class: `badge state-${m.state}` }, m.state), m.lastStep ? `, step ${m.lastStep}` : '')),
          ),
    );
  }

  fill(c);
  replace(
    el,
    h('p', { class: 'crumbs' }, h('a', { href: '#/clusters' }, 'Clusters'), ' › ', c.name),
    h('h1', { tabindex: '-1' }, `Cluster ${c.name} `, badge),
    h(
      'div',
      { class: 'actions' },
      can(ctx.who.role, 'admin') ? h('button', { type: 'button', 'data-action': 'kubeconfig', onclick: () => void download() }, 'Download kubeconfig') : null,
      can(ctx.who.role, 'operator')
        ? h(
            'button',
            {
              type: 'button',
              'data-action': 'retry',
              onclick: () =>
                void request('POST', `/clusters/${encodeURIComponent(name)}/retry`).then(
                  () => replace(result, notice('ok', 'Retry requested')),
                  (err: unknown) => replace(result, notice('error', `Retry failed: ${errorText(err)}`)),
                ),
            },
            'Retry',
          )
        : null,
      can(ctx.who.role, 'operator') ? h('button', { type: 'button', 'data-action': 'preflight', onclick: () => void preflight() }, 'Preflight') : null,
    ),
    result,
    live,
  );
  const names = new Map((c.machines ?? []).map((m) => [m.mac, m.hostname ?? m.mac]));
  const log = await eventLog({ cluster: name, nameOf: (mac) => names.get(mac) });
  el.append(h('h2', null, 'Events'), log.el);
  const later = debouncer(300);
  ctx.live((e) => {
    if (e.cluster !== name && !(e.mac !== null && members.has(e.mac))) return;
    log.onEvent(e);
    later('c', () => void api.cluster(name).then(fill, () => undefined));
  });
};

const OSES = ['ubuntu-24.04', 'ubuntu-22.04', 'ubuntu-20.04', 'ubuntu-18.04', 'debian-12'];

export const clusterFormView: View = async (ctx, el) => {
  const box = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { novalidate: true },
    field('name', 'Name', { required: true, autocomplete: 'off' }, 'Lower-case letters, digits and inner hyphens.'),
    select('os', 'Operating system', OSES, 'ubuntu-22.04'),
    select('installMethod', "Install method (image: racksmith's deploy agent writes an OS image)", ['autoinstall', 'preseed', 'image'], null, "the OS's own installer"),
    select('installDiskRule', 'Install disk rule (when a machine names no disk)', ['smallest', 'largest', 'first'], 'smallest'),
    field('imageUrl', 'Image (optional, install method image)', {}, "A URL or a file in the artifacts directory's images/; blank: the distribution's cloud image."),
    field('kubernetesVersion', 'Kubernetes version', { required: true, value: '1.30.2' }),
    select('containerRuntime', 'Container runtime', ['containerd', 'docker'], 'containerd'),
    select('cni', 'CNI', ['flannel', 'calico', 'weave'], 'flannel'),
    field('podSubnet', 'Pod subnet (optional)', {}, 'Default depends on the CNI.'),
    field('serviceSubnet', 'Service subnet (optional)', {}, 'Default 10.96.0.0/12.'),
    field('controlPlaneEndpoint', 'Control-plane endpoint (optional)', {}, "host:port; default: the load balancer machine's IP on 6443."),
    h('p', null, h('button', { type: 'submit' }, 'Create cluster'), ' ', h('a', { href: '#/clusters' }, 'Cancel')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    request<Cluster>('POST', '/clusters', values(form)).then(
      (c) => ctx.navigate(`#/clusters/${c.name}`),
      (err: unknown) => showError(form, box, err),
    );
  });
  replace(el, h('h1', { tabindex: '-1' }, 'New cluster'), box, form);
};

/** A rolling upgrade: from → to, its state (and why it stopped), and each node's progress. */
function upgradeSection(u: NonNullable<Cluster['upgrade']>): HTMLElement {
  const nodes = Object.entries(u.nodes ?? {});
  return h(
    'section',
    { class: 'upgrade', 'data-field': 'upgrade', 'aria-label': 'Upgrade' },
    h('h2', null, `Upgrade ${u.from} → ${u.to} `, h('span', { class: `badge upgrade-${u.state}` }, u.state)),
    u.reason ? h('p', null, u.reason) : null,
    nodes.length
      ? h(
          'table',
          { class: 'upgrade-nodes' },
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'node'), h('th', { scope: 'col' }, 'progress'))),
          h('tbody', null, nodes.map(([n, st]) => h('tr', null, h('td', null, n), h('td', null, st)))),
        )
      : h('p', null, `Workers ${u.maxUnavailable} at a time, control-plane nodes one at a time.`),
  );
}
