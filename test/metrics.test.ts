import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { collectServiceHealth, DHCP_METRICS, instruments, metricsMarkdown, POWER_METRICS } from '../server/lib/metric-catalogue.js';
import { createMetrics, MetricsError } from '../server/lib/metrics.js';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { parsePromText, PromParseError, promValue } from './lib/prom-text.js';

/**
 * `/metrics` on the real server parses with a strict text-format reader, and its counters move
 * as requests happen. The registry refuses inconsistent definitions; the health bridges read
 * what services count themselves; docs/metrics.md is the catalogue.
 */
const test = suite('metrics: /metrics on the real server');

let rs: RacksmithProcess;
let admin = '';

async function scrape(token?: string) {
  const res = await fetch(`${rs.url}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parsePromText(await res.text());
}

test.before(async () => {
  rs = await startRacksmith();
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
});
test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
});

test('the exposition parses strictly and has process, build and service metrics', async () => {
  const m = await scrape();
  assert.ok(m.get('process_cpu_user_seconds_total'), 'process metrics');
  assert.ok(m.get('nodejs_eventloop_lag_seconds'), 'Node.js metrics');
  assert.is(m.get('racksmith_http_requests_total')?.type, 'counter');
  assert.is(m.get('racksmith_http_request_duration_seconds')?.type, 'histogram');
  assert.is(promValue(m, 'racksmith_service_up', { service: 'http' }), 1);
  const build = m.get('racksmith_build_info')?.samples[0];
  assert.is(build?.value, 1);
  assert.ok(build?.labels['version']);
});

test('HTTP counters move by exactly the requests made, labelled by route template, never by raw path', async () => {
  const route = '/api/v1/machines/:mac';
  const before = await scrape();
  const base = (status: string) => promValue(before, 'racksmith_http_requests_total', { method: 'GET', route, status }) ?? 0;
  const ok0 = base('200');
  const nf0 = base('404');
  const countBefore = promValue(before, 'racksmith_http_request_duration_seconds_count', { method: 'GET', route }) ?? 0;

  assert.is((await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'm', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: '52:54:00:4d:00:01', hostname: 'm1', role: 'worker', cluster: 'm' })).status, 201);
  for (let i = 0; i < 3; i++) assert.is((await api(rs.url, admin, 'GET', '/api/v1/machines/52:54:00:4d:00:01')).status, 200);
  assert.is((await api(rs.url, admin, 'GET', '/api/v1/machines/52:54:00:4d:00:99')).status, 404);
  for (let i = 0; i < 5; i++) assert.is((await api(rs.url, null, 'GET', `/no/such/path/${i}`)).status, 404);

  const after = await scrape();
  const now = (status: string) => promValue(after, 'racksmith_http_requests_total', { method: 'GET', route, status }) ?? 0;
  assert.is(now('200') - ok0, 3);
  assert.is(now('404') - nf0, 1);
  assert.is((promValue(after, 'racksmith_http_request_duration_seconds_count', { method: 'GET', route }) ?? 0) - countBefore, 4);
  assert.ok((promValue(after, 'racksmith_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' }) ?? 0) >= 5);
  const routes = new Set(after.get('racksmith_http_requests_total')?.samples.map((s) => s.labels['route']));
  assert.not.ok([...routes].some((r) => r?.includes('/no/such')), 'raw paths never become labels');
  assert.ok(routes.has('/metrics'));
});

test('machines by state and state transitions follow the inventory', async () => {
  const m = await scrape();
  assert.is(promValue(m, 'racksmith_machines', { state: 'assigned' }), 1);
  assert.is(promValue(m, 'racksmith_machines', { state: 'joined' }), 0);
  assert.is(promValue(m, 'racksmith_clusters', { state: 'pending' }), 1);
  assert.is(promValue(m, 'racksmith_machine_transitions_total', { from: 'discovered', to: 'assigned' }), 1);
  assert.ok((promValue(m, 'racksmith_events_total', { type: 'state' }) ?? 0) >= 1);
  await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: '52:54:00:4d:00:02', hostname: 'm2', role: 'worker', cluster: 'm' });
  const m2 = await scrape();
  assert.is(promValue(m2, 'racksmith_machines', { state: 'assigned' }), 2);
  // The counters follow the event log: at once on SQLite, on PostgreSQL when the database's
  // notification of the commit arrives (milliseconds; bounded here).
  let transitions = promValue(m2, 'racksmith_machine_transitions_total', { from: 'discovered', to: 'assigned' });
  for (let i = 0; i < 50 && transitions !== 2; i++) {
    await new Promise((r) => setTimeout(r, 100));
    transitions = promValue(await scrape(), 'racksmith_machine_transitions_total', { from: 'discovered', to: 'assigned' });
  }
  assert.is(transitions, 2);
});

test('with RACKSMITH_METRICS_TOKEN set, /metrics needs it', async () => {
  const token = 'metrics-token-0123456789';
  const other = await startRacksmith({ env: { RACKSMITH_METRICS_TOKEN: token } });
  try {
    assert.is((await fetch(`${other.url}/metrics`)).status, 401);
    assert.is((await fetch(`${other.url}/metrics`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401);
    const ok = await fetch(`${other.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    assert.is(ok.status, 200);
    assert.ok(parsePromText(await ok.text()).get('racksmith_http_requests_total'));
    assert.not.ok(other.output().includes(token), 'the metrics token is not logged');
  } finally {
    await other.stop();
    other.cleanup();
  }
});

test.run();

const unit = suite('metrics: registry, bridges, catalogue');

unit('a name asked for twice is one metric; another type or other labels is refused with a code', async () => {
  const m = createMetrics({ processMetrics: false });
  const a = m.counter('x_total', 'x', ['k']);
  const b = m.counter('x_total', 'x', ['k']);
  a.inc({ k: 'v' });
  b.inc({ k: 'v' }, 2);
  assert.is(promValue(parsePromText(await m.text()), 'x_total', { k: 'v' }), 3);
  for (const bad of [() => m.gauge('x_total', 'x', ['k']), () => m.counter('x_total', 'x', ['j']), () => m.counter('bad-name', 'x'), () => m.counter('y_total', 'y', ['__reserved'])]) {
    try {
      bad();
      assert.unreachable('should throw');
    } catch (err) {
      assert.instance(err, MetricsError);
      assert.is((err as MetricsError).code, 'ERR_METRIC_DEFINITION');
    }
  }
});

unit('services feed the catalogue through handles; histograms stay consistent', async () => {
  const m = createMetrics({ processMetrics: false });
  const dhcp = instruments(m, DHCP_METRICS);
  const power = instruments(m, POWER_METRICS);
  dhcp.replies.inc({ reason: 'offer' });
  dhcp.dropped.inc({ reason: 'ignored-not-pxe' });
  dhcp.offerSeconds.observe({}, 0.0004);
  dhcp.leasesInUse.set({}, 7);
  power.callSeconds.observe({ driver: 'ipmi', action: 'status', outcome: 'ok' }, 0.08);
  const end = power.callSeconds.startTimer({ driver: 'ipmi', action: 'cycle' });
  end({ outcome: 'failed' });
  power.callFailures.inc({ driver: 'ipmi', action: 'cycle', reason: 'timeout' });
  const p = parsePromText(await m.text());
  assert.is(promValue(p, 'racksmith_dhcp_replies_total', { reason: 'offer' }), 1);
  assert.is(promValue(p, 'racksmith_dhcp_leases_in_use'), 7);
  assert.is(promValue(p, 'racksmith_dhcp_offer_duration_seconds_bucket', { le: '0.0005' }), 1);
  assert.is(promValue(p, 'racksmith_bmc_call_duration_seconds_count', { driver: 'ipmi', action: 'cycle', outcome: 'failed' }), 1);
});

unit('health bridges read a service\'s own counters at scrape time; a failing read empties only its metric', async () => {
  const m = createMetrics({ processMetrics: false });
  let counters: Record<string, number> = { transfersCompleted: 2, bytesSent: 1000, retransmittedBlocks: 3, refusedNotFound: 1 };
  collectServiceHealth(m, () => ({
    tftp: { state: 'serving', detail: { active: 1, counters } },
    dhcp: { state: 'failed', detail: { received: 9, leases: 2, offers: 1, replies: { offer: 3, 'nak-taken': 1 }, dropped: { ERR_DHCP_SHORT: 2, 'ignored-not-pxe': 4, bogus: 'x' } } },
    other: { state: 'off' },
  }));
  m.collect('gauge', 'broken', 'a read that throws', [], () => {
    throw new Error('store closed');
  });
  let p = parsePromText(await m.text());
  assert.is(promValue(p, 'racksmith_tftp_transfers_total', { outcome: 'complete' }), 2);
  assert.is(promValue(p, 'racksmith_tftp_sent_bytes_total'), 1000);
  assert.is(promValue(p, 'racksmith_tftp_retransmitted_blocks_total'), 3);
  assert.is(promValue(p, 'racksmith_tftp_errors_total', { reason: 'not-found' }), 1);
  assert.is(promValue(p, 'racksmith_tftp_errors_total', { reason: 'busy' }), undefined, 'absent in the detail → no sample');
  assert.is(promValue(p, 'racksmith_tftp_active_transfers'), 1);
  assert.is(promValue(p, 'racksmith_service_up', { service: 'tftp' }), 1);
  assert.is(promValue(p, 'racksmith_service_up', { service: 'dhcp' }), 0);
  assert.is(promValue(p, 'racksmith_dhcp_received_total'), 9);
  assert.is(promValue(p, 'racksmith_dhcp_replies_total', { reason: 'nak-taken' }), 1);
  assert.is(promValue(p, 'racksmith_dhcp_dropped_total', { reason: 'ERR_DHCP_SHORT' }), 2);
  assert.is(promValue(p, 'racksmith_dhcp_dropped_total', { reason: 'bogus' }), undefined, 'non-numbers are skipped');
  assert.is(promValue(p, 'racksmith_dhcp_leases_in_use'), 2);
  assert.is(promValue(p, 'racksmith_service_up', { service: 'other' }), undefined);
  counters = { ...counters, bytesSent: 5000 };
  p = parsePromText(await m.text());
  assert.is(promValue(p, 'racksmith_tftp_sent_bytes_total'), 5000);
  // Collectors run side by side, so a failure shows in the error counter from the next scrape on.
  assert.ok((promValue(p, 'racksmith_metrics_collect_errors_total', { metric: 'broken' }) ?? 0) >= 1);
});

unit('the strict reader refuses what Prometheus refuses', () => {
  const bad = [
    'x{a="1"} 1', // no final newline
    '# TYPE x counter\nx -1\n',
    '# TYPE x counter\nx 1\nx 2\n',
    'x{a="\\q"} 1\n',
    'x{a=1} 1\n',
    '1x 1\n',
    'x one\n',
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    '# TYPE x counter\nx 1\n# TYPE x gauge\n',
  ];
  for (const text of bad) assert.throws(() => parsePromText(text), (e: unknown) => e instanceof PromParseError, JSON.stringify(text));
  const good = parsePromText('# HELP x a "quoted" \\\\ help\n# TYPE x counter\nx{a="b\\"c\\nd"} 1.5e3 1700000000000\n');
  assert.is(promValue(good, 'x', { a: 'b"c\nd' }), 1500);
});

unit('docs/metrics.md lists exactly the catalogue', () => {
  const doc = readFileSync(join(PACKAGE_ROOT, 'docs', 'metrics.md'), 'utf8');
  const block = /<!-- metrics:begin -->\n([\s\S]*?)<!-- metrics:end -->/.exec(doc)?.[1];
  assert.ok(block, 'docs/metrics.md has no metrics block');
  assert.fixture(block, metricsMarkdown());
});

unit.run();
