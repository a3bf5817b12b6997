import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { newDataDir, removeDataDir, serveInNamespace, udhcpcScript, type ServeProcess } from './lib/dhcp.js';
import { Testbed } from './lib/netns.js';
import { parsePromText, promValue, type PromFamily } from './lib/prom-text.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * /metrics while real DHCP traffic flows: racksmith serve (authoritative) in a server namespace,
 * udhcpc and a malformed datagram from a client namespace; the DHCP counters read from the
 * service's own health detail move by what the client did, and the exposition stays strictly
 * valid.
 */
const test = suite('metrics: DHCP counters move with real DHCP traffic');
const run = promisify(execFile);
const missing = requirements(['udhcpc', 'curl', 'ip'], { netns: true });

const tb = new Testbed('w');
let serve: ServeProcess | null = null;
const dataDir = newDataDir();
let srv = '';
let cli = '';

async function scrape(): Promise<Map<string, PromFamily>> {
  const { stdout } = await run('ip', ['netns', 'exec', srv, 'curl', '-sS', '--fail', '--max-time', '5', `http://127.0.0.1:${serve?.httpPort}/metrics`]);
  return parsePromText(stdout);
}

test.before(async () => {
  if (missing) return;
  srv = await tb.addNamespace('s');
  cli = await tb.addNamespace('c');
  await tb.veth(srv, 'sv', cli, 'cv', '10.77.0.1/24');
  serve = await serveInNamespace(
    srv,
    {
      RACKSMITH_DHCP_MODE: 'authoritative',
      RACKSMITH_DHCP_INTERFACE: tb.name('sv'),
      RACKSMITH_DHCP_RANGE: '10.77.0.100-10.77.0.199',
      RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1',
    },
    { dataDir },
  );
});

test.after(async () => {
  await serve?.stop();
  await tb.destroy();
  removeDataDir(dataDir);
});

test('a DORA and a malformed datagram move received, replies, dropped, leases and the offer time', async () => {
  if (missing) return skipNote('metrics: DHCP', missing);
  const before = await scrape();
  const v = (m: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number => promValue(m, name, labels) ?? 0;
  assert.is(before.get('racksmith_dhcp_received_total')?.type, 'counter');
  assert.is(v(before, 'racksmith_service_up', { service: 'dhcp' }), 1);

  const ud = udhcpcScript(dataDir);
  await tb.exec(cli, 'udhcpc', ['-f', '-q', '-n', '-i', tb.name('cv'), '-s', ud.script, '-t', '5', '-T', '2'], { timeoutMs: 30_000 });
  assert.match(readFileSync(ud.log, 'utf8'), /event=bound ip=10\.77\.0\.1\d\d/);
  // Three bytes to the DHCP port: too short to be BOOTP, dropped with the decoder's error code.
  await tb.exec(cli, 'bash', ['-c', `exec 3<>/dev/udp/10.77.0.1/67; printf 'abc' >&3`]);
  // The garbage is handled asynchronously: scrape until its drop shows (bounded).
  let after = await scrape();
  for (let i = 0; i < 50 && !(after.get('racksmith_dhcp_dropped_total')?.samples ?? []).some((s) => /^ERR_DHCP_/.test(s.labels['reason'] ?? '')); i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = await scrape();
  }
  assert.ok(v(after, 'racksmith_dhcp_received_total') - v(before, 'racksmith_dhcp_received_total') >= 3, 'DISCOVER, REQUEST and the garbage were received');
  assert.is(v(after, 'racksmith_dhcp_replies_total', { reason: 'offer' }) - v(before, 'racksmith_dhcp_replies_total', { reason: 'offer' }), 1);
  assert.is(v(after, 'racksmith_dhcp_replies_total', { reason: 'ack' }) - v(before, 'racksmith_dhcp_replies_total', { reason: 'ack' }), 1);
  const dropped = after.get('racksmith_dhcp_dropped_total')?.samples ?? [];
  assert.ok(dropped.some((s) => /^ERR_DHCP_/.test(s.labels['reason'] ?? '') && s.value >= 1), `a decoder drop is counted: ${JSON.stringify(dropped)}`);
  assert.ok(v(after, 'racksmith_dhcp_leases_in_use') >= 1);
  // The OFFER was timed from the DISCOVER taken off the socket: one observation, well under a second.
  const offerCount = (m: Map<string, PromFamily>): number =>
    m.get('racksmith_dhcp_offer_duration_seconds')?.samples.find((s) => s.name.endsWith('_count'))?.value ?? 0;
  const offerSum = after.get('racksmith_dhcp_offer_duration_seconds')?.samples.find((s) => s.name.endsWith('_sum'))?.value ?? -1;
  assert.is(offerCount(after) - offerCount(before), 1);
  assert.ok(offerSum > 0 && offerSum < 1, `offer time ${offerSum} s`);
  // The HTTP counters moved too: two scrapes of /metrics.
  assert.ok(v(after, 'racksmith_http_requests_total', { method: 'GET', route: '/metrics', status: '200' }) >= 1);
});

test.run();
