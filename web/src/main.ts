import { api, can, errorText, whenSignedOut, type Role, type Who } from './api.js';
import { clusterFormView, clustersView, clusterView } from './clusters.js';
import { h, notice, replace } from './dom.js';
import { importView } from './import.js';
import { onLiveState, startLive, stopLive, subscribe, type LiveState } from './live.js';
import { machineFormView } from './machine-form.js';
import { machineView } from './machine.js';
import { machinesView } from './machines.js';
import { eventsView } from './events.js';
import { racksView } from './racks.js';
import type { View } from './view.js';

/**
 * The console's shell: sign-in, the hash router (`#/machines/<mac>`…), the header, and the live
 * connection's status. Pages are in their own modules; each gets who is signed in and decides
 * which buttons to draw from the role (the server enforces roles in any case).
 */

interface Route {
  readonly pattern: RegExp;
  readonly view: View;
  /** The least role that may open the page; others are sent to the rack view. */
  readonly role: Role;
}

const ROUTES: readonly Route[] = [
  { pattern: /^#?\/?$/, view: racksView, role: 'viewer' },
  { pattern: /^#\/machines(?:\?.*)?$/, view: machinesView, role: 'viewer' },
  { pattern: /^#\/events(?:\?.*)?$/, view: eventsView, role: 'viewer' },
  { pattern: /^#\/machines\/new$/, view: machineFormView, role: 'admin' },
  { pattern: /^#\/machines\/([^/]+)\/edit$/, view: machineFormView, role: 'admin' },
  { pattern: /^#\/machines\/([^/]+)$/, view: machineView, role: 'viewer' },
  { pattern: /^#\/import$/, view: importView, role: 'admin' },
  { pattern: /^#\/clusters$/, view: clustersView, role: 'viewer' },
  { pattern: /^#\/clusters\/new$/, view: clusterFormView, role: 'admin' },
  { pattern: /^#\/clusters\/([^/]+)$/, view: clusterView, role: 'viewer' },
];

const view = document.getElementById('view') as HTMLElement;
const top = document.getElementById('top') as HTMLElement;
let who: Who | null = null;
const leaving: (() => void)[] = [];

const LIVE_TEXT: Record<LiveState, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  closed: 'Not live: reload the page',
};

function leave(): void {
  for (const fn of leaving.splice(0)) fn();
  subscribe(null);
}

/** Bumped on every navigation: a page whose generation is old is no longer on screen. */
let generation = 0;

async function show(): Promise<void> {
  leave();
  const gen = ++generation;
  if (!who) return signIn();
  const hash = location.hash || '#/';
  const route = ROUTES.find((r) => r.pattern.test(hash));
  if (!route) {
    replace(view, h('h1', { tabindex: '-1' }, 'Not found'), h('p', null, 'No such page. ', h('a', { href: '#/' }, 'Back to the racks')));
    return;
  }
  if (!can(who.role, route.role)) {
    replace(view, h('h1', { tabindex: '-1' }, 'Not allowed'), notice('error', `This page needs an ${route.role} token; yours is ${who.role}.`));
    return;
  }
  const params = (route.pattern.exec(hash) ?? []).slice(1).map((p) => decodeURIComponent(p));
  replace(view, h('p', { class: 'loading', role: 'status' }, 'Loading…'));
  const page = h('div', { class: 'page' });
  const current = (): boolean => gen === generation;
  await route.view(
    {
      who,
      params,
      navigate: (to) => {
        if (location.hash === to) void show();
        else location.hash = to;
      },
      onLeave: (fn) => (current() ? leaving.push(fn) : fn()),
      live: (fn) => {
        if (current()) subscribe(fn);
      },
    },
    page,
  );
  if (!current()) return;
  replace(view, page);
  // Keyboard and screen-reader users land on the new page's heading.
  (page.querySelector('h1') as HTMLElement | null)?.focus();
}

function signedIn(w: Who): void {
  who = w;
  top.hidden = false;
  (document.getElementById('whoami') as HTMLElement).textContent = `${w.name} (${w.role})`;
  // Links a role cannot use are not shown (the server refuses them anyway).
  for (const a of top.querySelectorAll<HTMLElement>('[data-role]')) a.hidden = !can(w.role, (a.dataset['role'] ?? 'admin') as Role);
  startLive();
  void show();
}

function signIn(message?: string): void {
  leave();
  generation++;
  stopLive();
  who = null;
  top.hidden = true;
  const box = h('div', { 'aria-live': 'polite' }, message ? notice('error', message) : null);
  const input = h('input', { id: 'token', name: 'token', type: 'password', required: true, autocomplete: 'off', spellcheck: 'false' });
  const form = h(
    'form',
    { class: 'signin' },
    h('p', { class: 'field' }, h('label', { for: 'token' }, 'API token'), input, h('small', null, 'Made with ', h('code', null, 'racksmith token create --role viewer|operator|admin'), '.')),
    h('p', null, h('button', { type: 'submit' }, 'Sign in')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    api.signIn(input.value.trim()).then(
      (w) => {
        input.value = '';
        signedIn(w);
      },
      (err: unknown) => {
        replace(box, notice('error', `Sign-in failed: ${errorText(err)}`));
        input.focus();
      },
    );
  });
  replace(view, h('h1', { tabindex: '-1' }, 'Sign in to racksmith'), box, form);
  input.focus();
}

whenSignedOut(() => {
  if (who) signIn('Your session ended (the token was revoked or the server restarted with other tokens). Sign in again.');
});
onLiveState((s) => {
  const el = document.getElementById('live') as HTMLElement;
  el.textContent = LIVE_TEXT[s];
  el.className = `live-${s}`;
  if (s === 'closed' && who) void api.whoami().catch(() => undefined);
});
(document.getElementById('signout') as HTMLElement).addEventListener('click', () => {
  // Signed out from here on: a request of the old page answered 401 meanwhile must not draw a second
  // sign-in form over the one the user may already be typing into.
  leave();
  generation++;
  stopLive();
  who = null;
  void api.signOut().finally(() => signIn());
});
window.addEventListener('hashchange', () => void show());

api.whoami().then(signedIn, () => signIn());
