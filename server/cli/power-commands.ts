import type { ApiClient } from './client.js';
import { parse, UsageError, type Options } from './args.js';
import type { ClientFactory } from './inventory-commands.js';
import { table } from './table.js';
import { prefetchLine, type PrefetchItem } from '../artifacts/prefetch.js';

/**
 * Power from the command line: one machine's power, a reimage that follows its progress, and a
 * rack power job shown live (a table redrawn in place on a terminal; one line per change
 * otherwise, so logs and CI output stay readable).
 */
type Out = (text: string) => void;

const COMMON: Options = { url: { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' }, json: { type: 'boolean' } };
const ACTIONS = ['on', 'off', 'cycle', 'reset', 'status'];

export const RACK_HELP = `Usage:
  racksmith rack power RACK --action on|off|cycle|reset|status [--concurrency N] [--delay SECONDS] [--force] [--no-wait]

Powers every machine of the rack through its BMC, N at a time (default: the server's
rack-power-concurrency) with SECONDS between two machines' starts (default for on/cycle/reset:
the server's rack-power-delay-seconds; 0 for off/status). Shows the progress until the job is
done; exits 1 when a machine failed.

Before a power-on (on, cycle, reset) of machines that will install, racksmith runs the preflight
of their clusters (see "racksmith clusters preflight") and refuses when a check fails, then
caches their installer artifacts (shown as "prefetch" lines) before the first machine starts.
--force skips both: the machines start at once and fetch what they need themselves.

Common: --url URL (RACKSMITH_URL) --json; the API token from --token-file FILE or RACKSMITH_TOKEN
(or asked for on a terminal; --token TOKEN works too, but a flag is visible to every user in ps)
`;

export const POWER_HELP = `Usage:
  racksmith machines power MAC --action on|off|cycle|reset|status
  racksmith machines reimage MAC [--force] [--no-wait] [--timeout SECONDS]

power: one BMC action ("cycle" powers on a machine that is off).
reimage: rotates the seed token, has the node leave its cluster, sets the next boot to PXE and
power cycles; then the machine reinstalls and joins again. Follows the progress until the power
cycle (or a failure) unless --no-wait. --force reimages a control-plane node even when etcd would
lose quorum.

Common: --url URL (RACKSMITH_URL) --json; the API token from --token-file FILE or RACKSMITH_TOKEN
(or asked for on a terminal; --token TOKEN works too, but a flag is visible to every user in ps)
`;

interface EventJson {
  id: number;
  at: string;
  type: string;
  message: string;
  data: Record<string, unknown> | null;
}

interface JobItemJson {
  mac: string;
  hostname: string | null;
  state: string;
  result: string | null;
  error: { code: string; message: string } | null;
}

interface JobJson {
  prefetch?: { state: string; clusters: string[]; items: PrefetchItem[]; error: string | null } | null;
  id: string;
  rack: string;
  action: string;
  state: string;
  concurrency: number;
  delaySeconds: number;
  counts: Record<string, number>;
  machines: JobItemJson[];
}

const time = (): string => new Date().toISOString().slice(11, 19);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function num(v: string | boolean | undefined, flag: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+(\.\d+)?$/.test(v) || n < min || n > max) throw new UsageError(`--${flag} must be a number from ${min} to ${max}`);
  return n;
}

function action(v: string | boolean | undefined, cmd: string): string {
  if (typeof v !== 'string' || !ACTIONS.includes(v)) throw new UsageError(`${cmd}: --action must be one of ${ACTIONS.join(', ')}`);
  return v;
}

export async function machinePowerCommand(rest: readonly string[], client: ClientFactory, out: Out): Promise<void> {
  const { values, positionals } = parse(rest, { ...COMMON, action: { type: 'string' } }, 1);
  if (values['help']) return out(POWER_HELP);
  const mac = positionals[0];
  if (!mac) throw new UsageError('machines power: give the MAC');
  const r = await client(values).request<Record<string, unknown>>('POST', `/machines/${encodeURIComponent(mac)}/power`, { action: action(values['action'], 'machines power') });
  if (values['json']) return out(JSON.stringify(r, null, 2) + '\n');
  const who = `${String(r['hostname'] ?? r['mac'])} (${String(r['mac'])})`;
  const how = `cipher suite ${String(r['cipherSuite'])}, ${String(r['attempts'])} attempt(s), ${(Number(r['ms']) / 1000).toFixed(1)} s`;
  out(r['action'] === 'status' ? `${who}: power is ${String(r['state'])} (${how})\n` : `${who}: power ${String(r['result'])}: done (${how})\n`);
}

/** Prints the machine's new events until its reimage reached the power cycle or failed. */
async function followReimage(api: ApiClient, mac: string, afterId: number, timeoutMs: number, out: Out): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let after = afterId;
  while (Date.now() < deadline) {
    const evs = await api.request<EventJson[]>('GET', `/machines/${encodeURIComponent(mac)}/events?after=${after}`);
    for (const e of evs) {
      after = Math.max(after, e.id);
      if (!['reimage', 'state', 'power', 'cluster.node-removed', 'cluster.node-removal-failed'].includes(e.type)) continue;
      out(`${e.at.slice(11, 19)}  ${e.type.padEnd(12)} ${e.message}\n`);
      const step = e.data?.['step'];
      if (e.type === 'reimage' && step === 'power-cycled') return true;
      if (e.type === 'reimage' && step === 'failed') return false;
    }
    await sleep(1000);
  }
  out(`${time()}  still in progress after ${Math.round(timeoutMs / 1000)} s; follow with "racksmith machines get" or the events API\n`);
  return false;
}

export async function reimageCommand(rest: readonly string[], client: ClientFactory, out: Out): Promise<number> {
  const { values, positionals } = parse(rest, { ...COMMON, force: { type: 'boolean' }, 'no-wait': { type: 'boolean' }, timeout: { type: 'string' } }, 1);
  if (values['help']) {
    out(POWER_HELP);
    return 0;
  }
  const mac = positionals[0];
  if (!mac) throw new UsageError('machines reimage: give the MAC');
  const timeoutMs = (num(values['timeout'], 'timeout', 1, 86_400) ?? 1800) * 1000;
  const api = client(values);
  // Events before the request are history; follow only what comes after.
  const before = await api.request<EventJson[]>('GET', `/machines/${encodeURIComponent(mac)}/events?limit=10000`);
  const lastId = before.reduce((m, e) => Math.max(m, e.id), 0);
  const r = await api.request<Record<string, unknown>>('POST', `/machines/${encodeURIComponent(mac)}/reimage`, values['force'] ? { force: true } : {});
  if (values['json']) out(JSON.stringify(r, null, 2) + '\n');
  else out(`reimage ${String(r['reimage'])} of ${String(r['hostname'] ?? r['mac'])} accepted (${r['removal'] === 'pending' ? 'the node leaves its cluster first' : 'nothing to remove from the cluster'})\n`);
  if (values['no-wait']) return 0;
  return (await followReimage(api, String(r['mac']), lastId, timeoutMs, values['json'] ? () => undefined : out)) ? 0 : 1;
}

function jobTable(job: JobJson): string {
  return table(
    ['hostname', 'mac', 'state', 'result'],
    job.machines.map((m) => [m.hostname, m.mac, m.state, m.error ? `${m.error.code}: ${m.error.message}` : m.result]),
  );
}

const countsLine = (job: JobJson): string =>
  `${job.state === 'running' ? 'running' : job.state}: ` +
  ['ok', 'failed', 'skipped', 'cancelled', 'running', 'queued']
    .filter((k) => (job.counts[k] ?? 0) > 0)
    .map((k) => `${job.counts[k]} ${k}`)
    .join(', ');

export async function rackCommand(args: readonly string[], client: ClientFactory, out: Out, isTTY: boolean): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === '--help' || sub === '-h') {
    out(RACK_HELP);
    return sub ? 0 : 2;
  }
  if (sub !== 'power') throw new UsageError(`rack: unknown subcommand "${sub}" (power)`);
  const { values, positionals } = parse(rest, { ...COMMON, action: { type: 'string' }, concurrency: { type: 'string' }, delay: { type: 'string' }, force: { type: 'boolean' }, 'no-wait': { type: 'boolean' } }, 1);
  if (values['help']) {
    out(RACK_HELP);
    return 0;
  }
  const rack = positionals[0];
  if (!rack) throw new UsageError('rack power: give the rack');
  const body = {
    action: action(values['action'], 'rack power'),
    concurrency: num(values['concurrency'], 'concurrency', 1, 64),
    delaySeconds: num(values['delay'], 'delay', 0, 600),
    ...(values['force'] ? { force: true } : {}),
  };
  const api = client(values);
  let job = await api.request<JobJson>('POST', `/racks/${encodeURIComponent(rack)}/power`, body);
  const json = Boolean(values['json']);
  if (!json) out(`rack ${job.rack}: power ${job.action} on ${job.machines.length} machine(s), ${job.concurrency} at a time, ${job.delaySeconds} s apart (job ${job.id})\n`);
  if (values['no-wait']) {
    if (json) out(JSON.stringify(job, null, 2) + '\n');
    return 0;
  }
  const seen = new Map<string, string>();
  let drawn = 0;
  /** The power-on's first phase: one line per installer artifact as it moves. */
  const prefetchLines = (): string[] =>
    job.prefetch && (job.prefetch.state === 'running' || job.prefetch.items.some((i) => i.state !== 'done' || i.bytes > 0)) ? job.prefetch.items.map((i) => `prefetch ${prefetchLine(i)}`) : [];
  const show = (): void => {
    if (json) return;
    if (isTTY) {
      const text = prefetchLines().map((l) => l + '\n').join('') + jobTable(job) + countsLine(job) + '\n';
      // Redraw in place: up over the last drawing, clear to the end of the screen.
      out((drawn > 0 ? `\x1b[${drawn}A\x1b[J` : '') + text);
      drawn = text.split('\n').length - 1;
      return;
    }
    for (const [i, l] of prefetchLines().entries()) {
      const key = `prefetch:${job.prefetch?.items[i]?.release ?? ''}/${job.prefetch?.items[i]?.file ?? ''}`;
      if (seen.get(key) === l) continue;
      seen.set(key, l);
      out(`${time()}  ${l}\n`);
    }
    for (const m of job.machines) {
      const line = `${m.state}${m.result ? ' ' + m.result : ''}${m.error ? ` ${m.error.code}: ${m.error.message}` : ''}`;
      if (seen.get(m.mac) === line) continue;
      seen.set(m.mac, line);
      out(`${time()}  ${(m.hostname ?? '-').padEnd(16)} ${m.mac}  ${line}\n`);
    }
  };
  show();
  // Bounded by the job itself (every machine has a deadline); a generous cap guards the loop.
  for (let i = 0; i < 7200 && job.state === 'running'; i++) {
    await sleep(500);
    job = await api.request<JobJson>('GET', `/racks/${encodeURIComponent(job.rack)}/power/${job.id}`);
    show();
  }
  if (json) out(JSON.stringify(job, null, 2) + '\n');
  else if (!isTTY) out(`${time()}  ${countsLine(job)}\n`);
  return (job.counts['failed'] ?? 0) > 0 || job.state !== 'done' ? 1 : 0;
}
