import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { startBmcSim, type BmcSim } from './lib/bmc-sim.js';
import { summarisePng } from './lib/png.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — the console reads 5,000 machines and their events from the store, a page at a time.
// racksmith-test: alone — Chromium's clicks and renders time out when a VM takes a core from it.

/**
 * The console as a datacenter tool, in Debian's Chromium against the real server with 5,000
 * machines: the machine table (first render and a filter change measured and reported, never
 * asserted), sort, filters and search kept in the URL, a bulk power job on selected machines
 * against IPMI simulators with its live progress, a rack power job from the rack view, the power
 * state viewers see, bulk assign, import errors with each bad cell's value and fix and the
 * update-existing mode, the site event log, and the cluster page with what its bootstrap waits
 * for. Screenshots go to test-artifacts/ for a person to look at.
 */
const test = suite('console (datacenter): 5,000 machines, bulk actions, rack jobs, import fixes, logs');

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(PACKAGE_ROOT, 'test-artifacts');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const PASSWORD = 'Dc-bmc-pass1';
const RACKS = 125;
const PER_RACK = 40;
/** Rack r001's first machines have simulated BMCs. */
const WITH_BMC = 4;

const missing = requirements([CHROMIUM, 'ipmi_sim', 'ipmitool']);
let rs: RacksmithProcess;
let admin = '';
let viewer = '';
let profile = '';
let context: BrowserContext;
let page: Page;
const sims: BmcSim[] = [];
const pageErrors: string[] = [];
const figures: Record<string, number> = {};

const rackName = (r: number): string => `r${String(r).padStart(3, '0')}`;
const clusterOf = (r: number): string => (r === 1 ? 'dc' : `dc-${rackName(r)}`);
const macOf = (n: number): string => `52:54:00:d0:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;

async function screenshot(name: string, fullPage = true): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const png = await page.screenshot({ fullPage });
  writeFileSync(join(ARTIFACTS, name), png);
  const s = summarisePng(png);
  assert.ok(s.width >= 800 && s.height >= 400, `${name}: ${s.width}×${s.height}`);
  assert.ok(s.colours >= 20, `${name} looks blank: ${s.colours} distinct colours`);
}

/** Milliseconds from `act` (run in the page) until `done` holds, measured in the page itself. */
async function timed(act: string, done: string): Promise<number> {
  // A string, run as it is in the page: the test is compiled without the DOM's types.
  const ms = await page.evaluate(`(async () => {
    const t0 = performance.now();
    ${act};
    for (let i = 0; i < 3000 && !(${done}); i++) await new Promise((r) => requestAnimationFrame(r));
    return performance.now() - t0;
  })()`);
  return Number(ms);
}

async function countText(): Promise<string> {
  return (await page.locator('[data-field="count"]').textContent()) ?? '';
}

test.before(async () => {
  if (missing) return;
  try {
    await setUp();
  } catch (err) {
    // uvu reports a throwing hook only as tests that never ran: say why.
    process.stdout.write(`  before: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    throw err;
  }
});

async function setUp(): Promise<void> {
  rs = await startRacksmith({ env: { RACKSMITH_LOG_LEVEL: 'warn', RACKSMITH_RACK_POWER_DELAY_SECONDS: '0', RACKSMITH_POWER_TIMEOUT_SECONDS: '10' }, timeoutMs: 30_000 });
  admin = (await rs.cli(['token', 'create', '--role', 'admin', '--name', 'ada'])).trim();
  viewer = (await rs.cli(['token', 'create', '--role', 'viewer', '--name', 'vic'])).trim();
  for (let i = 0; i < WITH_BMC; i++) sims.push(await startBmcSim({ name: `dc${i}`, password: PASSWORD }));
  // A cluster per rack (one load balancer, three control-plane nodes, workers), r001's is "dc"; "dc2" is empty.
  for (const name of ['dc', 'dc2', ...Array.from({ length: RACKS - 1 }, (_, i) => clusterOf(i + 2))]) {
    const r = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name, ubuntuRelease: '22.04', kubernetesVersion: '1.30.2', containerRuntime: 'containerd', cni: 'flannel' });
    assert.is(r.status, 201, r.text);
  }
  // 5,000 machines in 125 racks of 40, units 1–40; roles like a real site; four BMCs simulated.
  const rows = ['mac,hostname,role,cluster,ip,rack,unit,bmc_address,bmc_username,bmc_password,bmc_port'];
  for (let n = 0; n < RACKS * PER_RACK; n++) {
    const r = Math.floor(n / PER_RACK) + 1;
    const unit = (n % PER_RACK) + 1;
    const role = n % PER_RACK === 0 ? 'loadbalancer' : n % PER_RACK < 4 ? 'control-plane' : 'worker';
    const sim = r === 1 && unit <= WITH_BMC ? sims[unit - 1] : undefined;
    rows.push([macOf(n), `${rackName(r)}-u${String(unit).padStart(2, '0')}`, role, clusterOf(r), `10.${100 + Math.floor(n / 250)}.${n % 250}.10`, rackName(r), unit, sim ? sim.address : '', sim ? 'admin' : '', sim ? PASSWORD : '', sim ? sim.port : ''].join(','));
  }
  const imported = await api(rs.url, admin, 'POST', '/api/v1/machines/import', rows.join('\n') + '\n', 'text/csv');
  assert.is(imported.status, 201, imported.text.slice(0, 500));
  assert.is(imported.body.imported, RACKS * PER_RACK);
  // One machine fails its install the way the installer reports it, so there is trouble to see.
  const failing = macOf(PER_RACK * 6 + 9);
  const script = await (await fetch(`${rs.url}/boot.ipxe?mac=${failing}&arch=x86_64&platform=efi`)).text();
  const token = /\/seed\/([A-Za-z0-9_-]+)\//.exec(script)?.[1];
  assert.ok(token, script);
  const fail = await fetch(`${rs.url}/seed/${token}/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ event_type: 'finish', name: 'cmd-install/stage-partitioning', result: 'FAIL', description: 'no disk matches the install disk rule' }) });
  assert.is(fail.status, 200, await fail.text());

  profile = mkdtempSync(join(tmpdir(), 'racksmith-chromium-'));
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1440, height: 900 } });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
  });
  await page.goto(rs.url + '/');
  await page.getByLabel('API token').fill(admin);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#live', { hasText: 'Live' }).waitFor();
}

test.after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await Promise.all(sims.map((s) => s.stop()));
  await rs?.stop();
  rs?.cleanup();
  if (Object.keys(figures).length) {
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(join(ARTIFACTS, 'console-5000.json'), JSON.stringify(figures, null, 2) + '\n');
    process.stdout.write(`\n  5,000 machines in Chromium: ${Object.entries(figures).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ')}\n`);
  }
});

test('the machine table: 5,000 machines, only the rows in sight in the page; sort and filters kept in the URL', async () => {
  if (missing) return skipNote('console (datacenter)', missing);
  await page.getByRole('heading', { name: 'Racks', exact: true }).waitFor();
  figures['first render (API + table)'] = await timed("location.hash = '#/machines'", "(document.querySelector('[data-field=count]')?.textContent ?? '').startsWith('5000 of 5000') && document.querySelectorAll('tr.row').length > 10");
  assert.is(await countText(), '5000 of 5000 machines');
  const rendered = await page.locator('tr.row').count();
  assert.ok(rendered > 20 && rendered < 120, `${rendered} rows in the page for 5,000 machines`);
  // Failed first when sorted by state.
  await page.locator('button[data-sort="state"]').click();
  await page.locator('th[aria-sort="ascending"] button[data-sort="state"]').waitFor();
  assert.match(page.url(), /#\/machines\?sort=state$/);
  assert.is(await page.locator('tr.row').first().getAttribute('data-mac'), macOf(PER_RACK * 6 + 9));
  // A filter change over 5,000 machines, measured in the page.
  figures['filter change (rack)'] = await timed(
    "const s = document.getElementById('filter-rack'); s.value = 'r077'; s.dispatchEvent(new Event('change'))",
    "(document.querySelector('[data-field=count]')?.textContent ?? '').startsWith('40 of 5000')",
  );
  assert.match(page.url(), /[?&]rack=r077/);
  assert.is(await page.locator('tr.row').count(), 40);
  figures['search (MAC fragment)'] = await timed(
    "const s = document.getElementById('filter-q'); s.value = 'd0:13:8'; s.dispatchEvent(new Event('input'))",
    "(document.querySelector('[data-field=count]')?.textContent ?? '').startsWith('0 of') || (document.querySelector('[data-field=count]')?.textContent ?? '').startsWith('1')",
  );
  // The URL is the view: a reload comes back to the same filters.
  await page.locator('#filter-q').fill('');
  await page.selectOption('#filter-role', 'control-plane');
  await page.locator('[data-field="count"]', { hasText: /^3 of 5000/ }).waitFor();
  await page.reload();
  await page.locator('[data-field="count"]', { hasText: /^3 of 5000/ }).waitFor();
  assert.is(await page.locator('#filter-rack').inputValue(), 'r077');
  assert.is(await page.locator('#filter-role').inputValue(), 'control-plane');
  // Scrolling the whole list draws its end.
  await page.goto(`${rs.url}/#/machines`);
  await page.locator('[data-field="count"]', { hasText: /^5000 of/ }).waitFor();
  await page.locator('.grid-scroll').evaluate((e) => (e.scrollTop = e.scrollHeight));
  // Rack order is the rack's own, top unit first: the list ends with the last rack's U1.
  await page.locator(`tr.row[data-mac="${macOf((RACKS - 1) * PER_RACK)}"]`).waitFor();
  await page.locator('.grid-scroll').evaluate((e) => (e.scrollTop = 0));
  await screenshot('console-machines.png', false);
});

test('a bulk power job on selected machines drives the IPMI simulators, with live progress; viewers see the power state', async () => {
  if (missing) return;
  await page.goto(`${rs.url}/#/machines?rack=r001&sort=rack`);
  await page.locator('[data-field="count"]', { hasText: /^40 of 5000/ }).waitFor();
  // The four machines with a BMC (top of the list: units 1–4 sort last in rack order, so pick them by name).
  for (let u = 1; u <= WITH_BMC; u++) await page.getByLabel(`Select r001-u0${u}`).check();
  await page.getByLabel('Select r001-u05').check();
  assert.is(await page.locator('[data-field="selected"]').textContent(), '5 machines selected');
  // Identify where the BMC can: the four with a BMC get the locator LED, the fifth is not asked.
  const identify = page.locator('[data-bulk="identify"]');
  assert.is(await identify.textContent(), 'Identify (4)');
  await identify.click();
  await page.locator('.bulk-out', { hasText: 'Identify (locator LED on for 5 minutes): 4 done' }).waitFor({ timeout: 30_000 });
  // Five minutes is longer than IPMI's own 255 s interval: the LED is forced on, and racksmith turns it off later.
  for (const s of sims) assert.is(s.identify(), '0 1', `${s.name}: the LED forced on`);
  for (const s of sims) assert.is(s.power(), '0');
  // A power-on makes assigned machines install: their cluster's preflight runs first, and this
  // test bed's upstreams do not answer, so it is refused with each failed check, nothing powered.
  await page.locator('[data-bulk="power-on"]').click();
  const refusal = page.locator('[data-field="preflight-refusal"]');
  await refusal.waitFor();
  assert.match((await refusal.textContent()) ?? '', /preflight failed, so no machine was powered.*dc: /);
  for (const s of sims) assert.is(s.power(), '0', `${s.name} stayed off`);
  await refusal.getByRole('button', { name: 'Power on anyway' }).click();
  const panel = page.locator('section.job');
  await panel.waitFor();
  await panel.locator('[data-field="job-state"]', { hasText: 'done' }).waitFor({ timeout: 60_000 });
  assert.match((await panel.locator('[data-field="job-counts"]').textContent()) ?? '', /^1 skipped · 4 ok|4 ok · 1 skipped/);
  assert.match((await panel.locator('.job-item.job-skipped').textContent()) ?? '', /ERR_NO_BMC/);
  for (const s of sims) assert.is(s.power(), '1', `${s.name} was powered on`);
  // The cached power state reaches the table without a reload, for every viewer.
  await page.locator(`tr.row[data-mac="${macOf(0)}"] .power-on`).waitFor();
  await screenshot('console-bulk-power.png');
  const m = (await api(rs.url, viewer, 'GET', `/api/v1/machines/${macOf(0)}`)).body;
  assert.is(m.powerState, 'on');
  assert.ok(Date.now() - Date.parse(m.powerStateAt) < 120_000);
});

test('rack power from the rack view: the job\u2019s progress live under the rack header; tiles show the power state', async () => {
  if (missing) return;
  await page.goto(`${rs.url}/#/`);
  const rack = page.locator('section.rack[data-rack="r001"]');
  await rack.waitFor();
  // The rack with a failed machine comes first, and its header counts it.
  assert.is(await page.locator('section.rack').first().getAttribute('data-rack'), 'r007');
  assert.match((await page.locator('section.rack[data-rack="r007"] [data-field="counts"]').textContent()) ?? '', /^1 failed39 assigned$/);
  // Rack-unit order: the top of the rack first.
  assert.is(await rack.locator('li.tile').first().getAttribute('data-mac'), macOf(PER_RACK - 1));
  await rack.locator('[data-action="rack-power"]').click();
  await page.getByRole('dialog', { name: 'Power rack r001' }).getByRole('button', { name: 'Power off' }).click();
  const panel = rack.locator('section.job');
  await panel.waitFor();
  await panel.locator('[data-field="job-state"]', { hasText: 'done' }).waitFor({ timeout: 60_000 });
  assert.match((await panel.locator('[data-field="job-counts"]').textContent()) ?? '', /4 ok/);
  assert.match((await panel.locator('[data-field="job-counts"]').textContent()) ?? '', /36 skipped/);
  for (const s of sims) assert.is(s.power(), '0', `${s.name} was powered off`);
  await rack.locator(`li[data-mac="${macOf(0)}"] .power-off`).waitFor();
  await page.evaluate('window.scrollTo(0, 0)');
  await screenshot('console-racks.png', false);
});

test('bulk assign: role, cluster and rack for the selection in one all-or-none request', async () => {
  if (missing) return;
  await page.goto(`${rs.url}/#/machines?rack=r125`);
  await page.locator('[data-field="count"]', { hasText: /^40 of/ }).waitFor();
  for (const u of ['38', '39', '40']) await page.getByLabel(`Select r125-u${u}`).check();
  await page.locator('[data-bulk="assign"]').click();
  const dialog = page.getByRole('dialog', { name: 'Assign 3 machines' });
  await dialog.getByLabel('Cluster').selectOption('dc2');
  await dialog.getByLabel('Rack').fill('spare');
  await dialog.getByRole('button', { name: 'Assign 3 machines' }).click();
  await page.getByText('Assigned 3 machines: cluster dc2, rack spare').waitFor();
  const spare = (await api(rs.url, viewer, 'GET', '/api/v1/machines?rack=spare')).body as { cluster: string }[];
  assert.equal(spare.map((m) => m.cluster), ['dc2', 'dc2', 'dc2']);
});

test('import: each bad cell with its value and fix, a semicolon sheet read as such, and the update-existing mode', async () => {
  if (missing) return;
  await page.goto(`${rs.url}/#/import`);
  const sheet = ['mac;hostname;role;cluster;rack;unit', '52:54:00:e1:00:01;edge1;master;dc;edge;1', '52:54:00:e1:00:02;Edge_2;worker;dc;edge;2', '52:54:00:e1:00:03;edge3;worker;dc;edge;U3', `${macOf(1)};r001-u02;control-plane;dc;r001;2`].join('\n');
  await page.getByLabel('or paste the CSV').fill(sheet);
  await page.getByRole('button', { name: 'Import' }).click();
  const table = page.locator('table.row-errors');
  await table.waitFor();
  const cells = async (row: number): Promise<string[]> => page.locator(`table.row-errors tr[data-row="${row}"] td`).allTextContents();
  assert.equal(await cells(1), ['1', 'role', 'master', 'Invalid option: expected one of "loadbalancer"|"control-plane"|"worker"', 'did you mean control-plane?']);
  assert.equal((await cells(2)).slice(0, 3), ['2', 'hostname', 'Edge_2']);
  assert.is((await cells(2))[4], 'did you mean edge-2?');
  assert.equal((await cells(3)).slice(0, 3), ['3', 'unit', 'U3']);
  assert.is((await cells(3))[4], 'did you mean 3?');
  await screenshot('console-import-errors.png');
  const text = page.getByLabel('or paste the CSV');
  await text.fill(sheet.replace('master', 'control-plane').replace('Edge_2', 'edge2').replace(';U3', ';3'));
  await page.getByRole('button', { name: 'Import' }).click();
  // Without the mode, a machine already there is a conflict, and nothing is stored.
  await page.getByRole('alert').filter({ hasText: /row 4, column mac/ }).waitFor();
  await page.getByLabel(/Update machines already in the inventory/).check();
  await page.getByRole('button', { name: 'Import' }).click();
  await page.getByText('Imported 3 machines (3 new, 0 updated, 1 unchanged). The sheet was read as separated by semicolons.').waitFor();
  await screenshot('console-import-update.png');
});

test('the site event log: filtered by type and text, kept in the URL, live', async () => {
  if (missing) return;
  await page.goto(`${rs.url}/#/events?type=power`);
  await page.locator('[data-field="event-count"]').waitFor();
  const types = await page.locator('.event-log tbody td:nth-child(2)').allTextContents();
  assert.ok(types.length >= 8, `${types.length} power events`);
  // `type=power` is the family: power and power.job.
  assert.ok(types.every((t) => /^power(\.|$)/.test(t)), types.join(', '));
  await page.locator('#events-q').fill('r001-u03');
  await page.locator('.event-log tbody tr').first().waitFor();
  for (const t of await page.locator('.event-log tbody td:nth-child(3)').allTextContents()) assert.is(t, 'r001-u03');
  assert.match(page.url(), /#\/events\?type=power&q=r001-u03$/);
  // Live: a status read from another client lands at the top.
  const before = await page.locator('.event-log tbody tr').count();
  assert.is((await api(rs.url, admin, 'POST', `/api/v1/machines/${macOf(2)}/power`, { action: 'status' })).status, 200);
  // A locator wait, not waitForFunction: a string predicate is evaluated in the page, which the console's CSP refuses.
  await page.locator('.event-log tbody tr').nth(before + 1).waitFor();
  assert.match((await page.locator('.event-log tbody tr').first().textContent()) ?? '', /power is off/);
  await page.locator('#events-q').fill('');
  await page.selectOption('#events-type', '');
  await page.locator('.event-log tbody tr').nth(20).waitFor();
  await screenshot('console-events.png', false);
});

test('the cluster page says what the bootstrap waits for, with its timeline and its own event log', async () => {
  if (missing) return;
  await page.goto(`${rs.url}/#/clusters/dc`);
  const waiting = page.locator('[data-field="waiting"]');
  await waiting.waitFor();
  assert.match((await waiting.textContent()) ?? '', /Waiting: .*(control-plane|load balancer)/);
  await page.locator('section.event-log tbody tr').first().waitFor();
  await screenshot('console-cluster.png', false);
});

test('a viewer sees power states and the table, and no bulk actions', async () => {
  if (missing) return;
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API token').fill(viewer);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#whoami', { hasText: '(viewer)' }).waitFor();
  await page.goto(`${rs.url}/#/machines?rack=r001`);
  await page.locator('[data-field="count"]', { hasText: /^40 of/ }).waitFor();
  await page.locator(`tr.row[data-mac="${macOf(0)}"] .power-off`).waitFor();
  await page.getByLabel('Select r001-u01').check();
  assert.is(await page.locator('[data-bulk]').count(), 0, 'no bulk actions for a viewer');
  assert.equal(pageErrors, [], 'script errors in the page');
});

test.run();
