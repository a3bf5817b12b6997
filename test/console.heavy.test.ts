import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { summarisePng } from './lib/png.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { IN_CI, requirements, skipNote, which } from './lib/tools.js';

// racksmith-test: both engines — the console reads machines and events from the store; short enough to run twice.
// racksmith-test: alone — Chromium's clicks and renders time out when a VM takes a core from it.

/**
 * The web console in real headless Chromium (Debian's, driven by playwright-core), against the
 * real server: sign in, create a cluster, import a CSV with a bad row and fix it, watch the rack
 * view change live as a machine walks the boot path over the same HTTP paths a machine uses,
 * the machine page, a viewer who sees no write buttons, and screenshots that are not blank.
 */
const test = suite('console: the web console in Chromium');

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(PACKAGE_ROOT, 'test-artifacts');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const missing = requirements([CHROMIUM]);
let rs: RacksmithProcess;
let admin = '';
let viewer = '';
let profile = '';
let context: BrowserContext;
let page: Page;
const offsite: string[] = [];
const pageErrors: string[] = [];

const BAD_CSV = [
  'mac,hostname,role,cluster,ip,rack',
  '52:54:00:c0:00:01,c1,control-plane,lab,,r1',
  '52:54:00:c0:00:02,c2,wizard,lab,10.77.0.12,r1',
  '52:54:00:c0:00:03,c3,worker,lab,10.77.0.13,r2',
].join('\n');
const DRIVEN = '52:54:00:c0:00:01';

async function open(): Promise<Page> {
  profile = mkdtempSync(join(tmpdir(), 'racksmith-chromium-'));
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 900 } });
  const p = context.pages()[0] ?? (await context.newPage());
  p.setDefaultTimeout(10_000);
  p.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(rs.url) && !u.startsWith('blob:') && !u.startsWith('data:')) offsite.push(u);
  });
  p.on('pageerror', (err) => pageErrors.push(err.message));
  p.on('console', (m) => {
    // A refused API call shows up as a failed resource load; anything else is a script error.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
  });
  return p;
}

async function tileState(mac: string): Promise<string> {
  return (await page.locator(`[data-mac="${mac}"] [data-field="state"]`).textContent()) ?? '';
}

async function waitTileState(mac: string, state: string): Promise<void> {
  await page.locator(`[data-mac="${mac}"] [data-field="state"]`, { hasText: new RegExp(`^${state}$`) }).waitFor({ timeout: 10_000 });
}

async function screenshot(name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const png = await page.screenshot({ fullPage: true });
  writeFileSync(join(ARTIFACTS, name), png);
  const s = summarisePng(png);
  assert.ok(s.width >= 800 && s.height >= 400, `${name}: ${s.width}×${s.height}`);
  // A blank or single-colour page has a handful of colours; text, tiles and borders give hundreds.
  assert.ok(s.colours >= 20, `${name} looks blank: ${s.colours} distinct colours`);
}

test.before(async () => {
  if (missing) return;
  rs = await startRacksmith();
  admin = (await rs.cli(['token', 'create', '--role', 'admin', '--name', 'ada'])).trim();
  viewer = (await rs.cli(['token', 'create', '--role', 'viewer', '--name', 'vic'])).trim();
  page = await open();
});

test.after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await rs?.stop();
  rs?.cleanup();
});

test('sign in with an API token; a bad token is refused with the API\'s message', async () => {
  if (missing) return skipNote('console', missing);
  await page.goto(rs.url + '/');
  await page.getByLabel('API token').fill('rs_wrong');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'unknown or revoked' }).waitFor();
  await page.getByLabel('API token').fill(admin);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Racks', exact: true }).waitFor();
  assert.match((await page.locator('#whoami').textContent()) ?? '', /ada \(admin\)/);
  await page.locator('#live', { hasText: 'Live' }).waitFor();
});

test('create a cluster with the form', async () => {
  if (missing) return;
  await page.getByRole('link', { name: 'New cluster' }).click();
  await page.getByLabel('Name', { exact: true }).fill('Lab');
  await page.getByRole('button', { name: 'Create cluster' }).click();
  // The API's message lands beside the field it names.
  await page.locator('#f-name[aria-invalid="true"]').waitFor();
  assert.match((await page.locator('.field-error').textContent()) ?? '', /lower-case/);
  await page.getByLabel('Name', { exact: true }).fill('lab');
  await page.getByRole('button', { name: 'Create cluster' }).click();
  await page.getByRole('heading', { name: /Cluster lab/ }).waitFor();
  assert.match((await page.locator('h1 [data-field="state"]').textContent()) ?? '', /pending/);
});

test('import a CSV with one bad row: the row\'s error is shown and nothing is stored; fixed, it imports', async () => {
  if (missing) return;
  await page.getByRole('link', { name: 'Import CSV' }).click();
  await page.getByLabel('or paste the CSV').fill(BAD_CSV);
  await page.getByRole('button', { name: 'Import' }).click();
  const row = page.locator('table.row-errors tr[data-row="2"]');
  await row.waitFor();
  assert.match((await row.textContent()) ?? '', /^2role/);
  assert.match((await page.getByRole('alert').textContent()) ?? '', /Nothing was imported: row 2, column role/);
  await screenshot('console-import-errors.png');
  assert.equal((await api(rs.url, admin, 'GET', '/api/v1/machines')).body, []);
  const text = page.getByLabel('or paste the CSV');
  await text.fill(((await text.inputValue()) ?? '').replace('wizard', 'worker'));
  await page.getByRole('button', { name: 'Import' }).click();
  await page.getByText('Imported 3 machines.').waitFor();
});

test('the rack view groups the machines by rack, each tile with host, role, state, step and time', async () => {
  if (missing) return;
  await page.getByRole('link', { name: 'See them in the rack view' }).click();
  await page.getByRole('heading', { name: 'Racks', exact: true }).waitFor();
  const r1 = page.getByRole('region', { name: 'Rack r1' });
  const r2 = page.getByRole('region', { name: 'Rack r2' });
  assert.is(await r1.locator('.tile').count(), 2);
  assert.is(await r2.locator('.tile').count(), 1);
  const t = page.locator(`[data-mac="${DRIVEN}"]`);
  assert.match((await t.textContent()) ?? '', /c1.*control-plane.*assigned.*boot step: —.*firmware not seen yet · loader not served yet · Secure Boot not seen.*in state for \d+s/);
  assert.is(await tileState(DRIVEN), 'assigned');
});

test('a machine walking the boot path changes its tile live, without a reload', async () => {
  if (missing) return;
  await page.evaluate('window.notReloaded = true');

  // An admin change is streamed like any other event.
  assert.is((await api(rs.url, admin, 'PATCH', '/api/v1/machines/52:54:00:c0:00:03', { role: null, cluster: null })).status, 200);
  await waitTileState('52:54:00:c0:00:03', 'discovered');
  assert.is((await api(rs.url, admin, 'PATCH', '/api/v1/machines/52:54:00:c0:00:03', { role: 'worker', cluster: 'lab' })).status, 200);
  await waitTileState('52:54:00:c0:00:03', 'assigned');

  // The machine's own HTTP paths: boot script, seed, installed, phone-home.
  const boot = await fetch(`${rs.url}/boot.ipxe?mac=${DRIVEN}&arch=x86_64&platform=pcbios`);
  const script = await boot.text();
  if (boot.status === 404 && /ERR_NOT_FOUND/.test(script)) {
    const why = 'the boot chain (GET /boot.ipxe, /seed/<token>/…) is not on this branch yet';
    if (IN_CI) throw new Error(`under CI nothing may skip: ${why}`);
    skipNote('console: live tile through the boot path', why);
  } else {
    assert.is(boot.status, 200, script);
    const token = /\/seed\/([A-Za-z0-9_-]+)\//.exec(script)?.[1];
    assert.ok(token, `the boot script names a seed URL:\n${script}`);
    const seed = await fetch(`${rs.url}/seed/${token}/user-data`);
    assert.is(seed.status, 200, await seed.text());
    await waitTileState(DRIVEN, 'provisioning');
    // What the boot script's query said of the firmware reaches the tile live.
    await page.locator(`[data-mac="${DRIVEN}"] [data-field="boot"]`, { hasText: /^BIOS x86_64 · / }).waitFor();
    // The boot step is a field of the machine: the tile shows it once it is set (no reload).
    await page.locator(`[data-mac="${DRIVEN}"] [data-field="step"]`, { hasText: /^(?!—$)\S+/ }).waitFor();
    // The installer reports the disk it installs on (the machine page shows it below).
    const disk = { event_type: 'finish', origin: 'racksmith-agent', name: 'racksmith-agent/disk', result: 'SUCCESS', description: '/dev/nvme0n1', disk: { name: 'nvme0n1', kind: 'nvme', sizeBytes: 480_103_981_056, serial: 'S5GXNF0R123456', model: 'Samsung SSD 980 PRO 1TB', chosenBy: 'rule smallest' } };
    assert.ok((await fetch(`${rs.url}/seed/${token}/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(disk) })).ok);
    assert.ok((await fetch(`${rs.url}/seed/${token}/installed`, { method: 'POST' })).ok);
    await waitTileState(DRIVEN, 'installed');
    const form = new URLSearchParams({ pub_key_ed25519: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ4dNpyR2sWpvZ0GmN4jkE1pFSBlBVZkyL8oW4C2sU8p root@c1', instance_id: 'iid-c1', hostname: 'c1', fqdn: 'c1.lab' });
    assert.ok((await fetch(`${rs.url}/seed/${token}/phone-home`, { method: 'POST', body: form })).ok);
    await waitTileState(DRIVEN, 'ready');
    // The tile ends on the step the API has for the machine, whenever the service set it.
    const apiStep = (await api(rs.url, admin, 'GET', `/api/v1/machines/${DRIVEN}`)).body.lastStep as string | null;
    assert.ok(apiStep, 'the boot chain recorded a step');
    await page.locator(`[data-mac="${DRIVEN}"] [data-field="step"]`, { hasText: new RegExp(`^${apiStep}$`) }).waitFor();
  }
  assert.ok(await page.evaluate('window.notReloaded === true'), 'the page was not reloaded');
  await screenshot('console-racks.png');
});

test('tiles are reachable with the keyboard, and state is written, not only coloured', async () => {
  if (missing) return;
  let reached = '';
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = String(await page.evaluate(`document.activeElement?.closest('[data-mac]')?.getAttribute('data-mac') ?? ''`));
  }
  assert.ok(reached, 'a tile link takes the keyboard focus');
  await page.keyboard.press('Enter');
  await page.locator('h1 [data-field="state"]').waitFor();
  assert.match(page.url(), new RegExp(`#/machines/${reached}$`));
  await page.goBack();
  await page.getByRole('heading', { name: 'Racks', exact: true }).waitFor();
  for (const label of await page.locator('.tile a').evaluateAll((as) => as.map((a) => a.getAttribute('aria-label') ?? ''))) {
    assert.match(label, /: (discovered|assigned|provisioning|installed|ready|joining|joined|failed|reimaging)/);
  }
});

test('the machine page: facts, events, power buttons (the API\'s refusal shown), reimage behind a confirmation', async () => {
  if (missing) return;
  await page.locator(`[data-mac="${DRIVEN}"] a`).click();
  await page.getByRole('heading', { name: /^c1/ }).waitFor();
  assert.is(await page.locator('[data-fact="MAC"]').textContent(), DRIVEN);
  assert.match((await page.locator('[data-fact="Install disk"]').textContent()) ?? '', /^\/dev\/nvme0n1 — NVME, 480\.1 GB, Samsung SSD 980 PRO 1TB, serial S5GXNF0R123456 \(chosen by rule smallest, reported /);
  assert.ok((await page.locator('ol.events li').count()) >= 1);
  assert.match((await page.locator('ol.events').textContent()) ?? '', /assigned as control-plane of cluster lab/);
  await page.getByRole('button', { name: 'Power status' }).click();
  await page.locator('.result .notice:not(.info)').waitFor();
  const said = (await page.locator('.result').textContent()) ?? '';
  assert.match(said, /Power status (failed: .+\(ERR_[A-Z_]+\)|: done)/);
  await page.getByRole('button', { name: 'Reimage…' }).click();
  const dialog = page.getByRole('dialog', { name: /Reimage c1\?/ });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.not.match((await page.locator('.result').textContent()) ?? '', /Reimage/);
  // A live event lands in the timeline without a reload.
  assert.match((await page.locator('[data-fact="Secure Boot"]').textContent()) ?? '', /not marked; not seen yet/);
  assert.match((await page.locator('[data-fact="Boot loader"]').textContent()) ?? '', /^site default/);
  assert.is((await api(rs.url, admin, 'PATCH', `/api/v1/machines/${DRIVEN}`, { rack: 'r7', bootLoader: 'shim-grub', secureBoot: true })).status, 200);
  await page.locator('ol.events li', { hasText: 'updated rack' }).waitFor();
  await page.locator('[data-fact="Rack"]', { hasText: 'r7' }).waitFor();
  await page.locator('[data-fact="Boot loader"]', { hasText: 'shim-grub' }).waitFor();
  await page.locator('[data-fact="Secure Boot"]', { hasText: 'marked on' }).waitFor();
  await screenshot('console-machine.png');
});

test('editing a machine in the form keeps the BMC port and cipher suite it does not show', async () => {
  if (missing) return;
  const mac = '52:54:00:c0:00:03';
  const bmc = { driver: 'ipmi', address: '10.77.1.13', port: 1623, username: 'admin', password: 'Bmc-pass-c3', cipherSuite: 3 };
  assert.is((await api(rs.url, admin, 'PATCH', `/api/v1/machines/${mac}`, { bmc })).status, 200);
  await page.goto(`${rs.url}/#/machines/${mac}/edit`);
  await page.getByRole('heading', { name: /^Edit c3/ }).waitFor();
  await page.getByLabel('Host name').fill('c3b');
  await page.getByLabel('BMC user').fill('operator');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('heading', { name: /^c3b/ }).waitFor();
  const saved = (await api(rs.url, admin, 'GET', `/api/v1/machines/${mac}`)).body;
  assert.is(saved.hostname, 'c3b');
  assert.equal(saved.bmc, { driver: 'ipmi', address: '10.77.1.13', port: 1623, username: 'operator', cipherSuite: 3, passwordSet: true, solCapture: null });
  await page.goto(`${rs.url}/#/machines/${DRIVEN}`);
  await page.getByRole('heading', { name: /^c1/ }).waitFor();
});

test('the cluster page warns about an even number of control-plane nodes, and runs the preflight: one row per check', async () => {
  if (missing) return;
  const added = await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: '52:54:00:c0:00:09', hostname: 'c9', role: 'control-plane', cluster: 'lab', rack: 'r9' });
  assert.is(added.status, 201, added.text);
  assert.match(added.body.warnings[0], /cluster lab has 2 control-plane nodes/);
  await page.goto(`${rs.url}/#/clusters/lab`);
  await page.getByRole('heading', { name: /Cluster lab/ }).waitFor();
  const warning = page.locator('[data-field="warnings"] .notice.warning');
  await warning.waitFor();
  assert.match((await warning.textContent()) ?? '', /2 control-plane nodes: etcd needs a majority, so 2 tolerate no failure/);
  await page.getByRole('button', { name: 'Preflight' }).click();
  // The test server's upstreams are a loopback port nobody listens on: every request fails fast.
  await page.locator('table.preflight').waitFor();
  assert.match((await page.locator('.notice.error', { hasText: 'Preflight:' }).textContent()) ?? '', /Preflight: \d+ of \d+ checks failed/);
  const row = page.locator('table.preflight tr[data-check="kubernetes-packages"]');
  assert.match((await row.textContent()) ?? '', /kubelet, kubeadm, kubectl 1\.30\.2-\*failed127\.0\.0\.1:9 refused the connection/);
  await screenshot('console-cluster-preflight.png');
  // Back where the next test signs out and in again.
  await page.goto(`${rs.url}/#/machines/${DRIVEN}`);
  await page.getByRole('heading', { name: /^c1/ }).waitFor();
});

test('a viewer token sees no write buttons and no admin pages', async () => {
  if (missing) return;
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API token').fill(viewer);
  await page.getByRole('button', { name: 'Sign in' }).click();
  // Signed in again, the console stays on the page it was on.
  await page.getByRole('heading', { name: /^c1/ }).waitFor();
  assert.match((await page.locator('#whoami').textContent()) ?? '', /vic \(viewer\)/);
  assert.is(await page.locator('[data-action]').count(), 0, 'no write buttons on the machine page');
  await page.getByRole('link', { name: 'Racks', exact: true }).first().click();
  await page.getByRole('heading', { name: 'Racks', exact: true }).waitFor();
  for (const name of ['Add machine', 'Import CSV', 'New cluster']) assert.is(await page.getByRole('link', { name }).count(), 0, name);
  await page.locator(`[data-mac="${DRIVEN}"] a`).click();
  await page.getByRole('heading', { name: /^c1/ }).waitFor();
  assert.is(await page.getByRole('button').filter({ hasNotText: 'Sign out' }).count(), 0);
  await page.goto(`${rs.url}/#/clusters/lab`);
  await page.getByRole('heading', { name: /Cluster lab/ }).waitFor();
  assert.is(await page.locator('[data-action]').count(), 0, 'no kubeconfig or retry for a viewer');
  await page.goto(`${rs.url}/#/import`);
  await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
});

test('everything came from racksmith itself; no script errors; the console is served with a strict CSP', async () => {
  if (missing) return;
  assert.equal(offsite, [], 'requests outside racksmith');
  assert.equal(pageErrors, [], 'script errors in the page');
  const res = await fetch(rs.url + '/');
  assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'; script-src 'self'/);
  assert.match(await res.text(), /<script type="module" src="\/console\/js\/main.js"><\/script>/);
  if (!which(CHROMIUM)) assert.unreachable();
});

test.run();
