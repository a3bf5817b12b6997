import { readFileSync } from 'node:fs';
import type { ApiClient } from './client.js';
import { CLUSTERS_HELP, MACHINES_HELP } from './help.js';
import { parse, UsageError, type Options } from './args.js';
import { readSecret, terminalPrompt } from './secrets.js';
import { table } from './table.js';
import { machinePowerCommand, reimageCommand } from './power-commands.js';
import { checkScope } from './scope.js';
import { consoleCommand, identifyCommand } from './tech-commands.js';
import { diskLabel } from './watch.js';

/** Thin commands over the REST API: what an admin does daily, without curl. */

const COMMON: Options = { url: { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' }, json: { type: 'boolean' } };

export interface ClientFactory {
  (values: Record<string, string | boolean | undefined>): ApiClient;
}

type Out = (text: string) => void;

interface MachineJson {
  mac: string;
  hostname: string | null;
  role: string | null;
  cluster: string | null;
  ip: string | null;
  rack: string | null;
  state: string;
  lastStep: string | null;
  installDisk?: string | null;
  installedDisk?: { name: string; sizeBytes: number } | null;
}

interface ClusterJson {
  name: string;
  os?: string;
  installMethod?: string;
  ubuntuRelease: string | null;
  kubernetesVersion: string;
  containerRuntime: string;
  cni: string;
  state: string;
  controlPlaneEndpoint: string | null;
  machineCount: number;
  warnings?: string[];
  machines?: MachineJson[];
  vip?: string | null;
  upgrade?: { id: string; from: string; to: string; state: string; reason: string | null; nodes?: Record<string, string> };
  steps?: { id?: string; name?: string; state?: string; machine?: string | null; startedAt?: string | null; endedAt?: string | null; seconds?: number | null; error?: string | null }[];
  orchestration?: { waiting?: string[]; running?: string[]; next?: string[]; lock?: { holder: string; expiresAt: string } | null };
}

interface EventJson {
  id: number;
  at: string;
  type: string;
  source: string | null;
  message: string;
}

/** "3m05s" for a step's duration. */
const duration = (s: number | null | undefined): string | null => (s === null || s === undefined ? null : s < 60 ? `${s.toFixed(1)}s` : `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`);

const machineRows = (ms: readonly MachineJson[]): string =>
  table(['mac', 'hostname', 'role', 'cluster', 'ip', 'rack', 'state', 'step', 'disk'], ms.map((m) => [m.mac, m.hostname, m.role, m.cluster, m.ip, m.rack, m.state, m.lastStep, diskLabel(m.installedDisk) ?? m.installDisk ?? null]));

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);
function unitOf(v: string | boolean | undefined): number {
  if (typeof v !== 'string' || !/^\d{1,2}$/.test(v)) throw new UsageError('--unit must be a rack unit (1 = the bottom slot), or none with set');
  return Number(v);
}

/** What the server warns about (an even number of control-plane nodes), one line each. */
const warningLines = (ws: readonly string[] | undefined): string => (ws ?? []).map((w) => `warning: ${w}\n`).join('');
/** `none` clears a field in `set`. */
const clearable = (v: string | boolean | undefined): string | null | undefined => (typeof v === 'string' ? (v === 'none' ? null : v) : undefined);

/** Where a machine goes and how it boots: `add` and `set` alike. */
const PLACEMENT_FLAGS: Options = {
  hostname: { type: 'string' },
  role: { type: 'string' },
  cluster: { type: 'string' },
  ip: { type: 'string' },
  rack: { type: 'string' },
  unit: { type: 'string' },
  'install-disk': { type: 'string' },
  'boot-loader': { type: 'string' },
  'secure-boot': { type: 'string' },
};

const BMC_FLAGS: Options = {
  'bmc-address': { type: 'string' },
  'bmc-port': { type: 'string' },
  'bmc-username': { type: 'string' },
  'bmc-password': { type: 'string' },
  'bmc-password-file': { type: 'string' },
  'bmc-cipher-suite': { type: 'string' },
};

/** What `set` changes of a BMC besides its address, user and password (`default`: back to the default). */
const BMC_SET_FLAGS: Options = {
  'bmc-driver': { type: 'string' },
  'bmc-system-id': { type: 'string' },
  'bmc-tls-fingerprint': { type: 'string' },
  'bmc-verify-tls': { type: 'string' },
  'sol-capture': { type: 'string' },
};

function onOff(flag: string, v: string, withDefault: boolean): boolean | null {
  if (v === 'on') return true;
  if (v === 'off') return false;
  if (withDefault && v === 'default') return null;
  throw new UsageError(`--${flag}: on, off${withDefault ? ' or default' : ''}`);
}

/** The BMC fields of BMC_SET_FLAGS given to `set`, as the API's BMC patch names them. */
function bmcSettingsPatch(values: Record<string, string | boolean | undefined>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const v = (k: string): string | undefined => str(values[k]);
  const driver = v('bmc-driver');
  if (driver !== undefined) out['driver'] = driver;
  const systemId = v('bmc-system-id');
  if (systemId !== undefined) out['systemId'] = systemId === 'default' ? null : systemId;
  const fingerprint = v('bmc-tls-fingerprint');
  if (fingerprint !== undefined) out['tlsFingerprint'] = fingerprint === 'default' ? null : fingerprint;
  const verify = v('bmc-verify-tls');
  if (verify !== undefined) out['verifyTls'] = onOff('bmc-verify-tls', verify, false);
  const sol = v('sol-capture');
  if (sol !== undefined) out['solCapture'] = onOff('sol-capture', sol, true);
  return out;
}

/** The BMC password: --bmc-password, --bmc-password-file, RACKSMITH_BMC_PASSWORD, or asked for on a terminal. */
function bmcPassword(values: Record<string, string | boolean | undefined>, address: string | null): Promise<string | undefined> {
  return readSecret(
    {
      what: `BMC password${address ? ` for ${address}` : ''}`,
      flag: 'bmc-password',
      flagValue: str(values['bmc-password']),
      fileFlag: 'bmc-password-file',
      fileValue: str(values['bmc-password-file']),
      envName: 'RACKSMITH_BMC_PASSWORD',
    },
    { env: process.env, prompt: terminalPrompt() },
  );
}

export async function machinesCommand(args: readonly string[], client: ClientFactory, out: Out): Promise<void> {
  const [sub, ...rest] = args;
  if (!sub) throw new UsageError('machines: give a subcommand (list, add, set, rm, import)');
  if (sub === '--help' || sub === '-h') return out(MACHINES_HELP);
  switch (sub) {
    case 'list': {
      const { values } = parse(rest, { ...COMMON, cluster: { type: 'string' }, role: { type: 'string' }, state: { type: 'string' }, rack: { type: 'string' } });
      if (values['help']) return out(MACHINES_HELP);
      const q = new URLSearchParams();
      for (const k of ['cluster', 'role', 'state', 'rack']) {
        const v = str(values[k]);
        if (v !== undefined) q.set(k, v);
      }
      const api = client(values);
      const ms = await api.request<MachineJson[]>('GET', `/machines${q.size ? '?' + q.toString() : ''}`);
      // Nothing found for a rack or cluster: say so if it does not exist at all (a typo).
      if (ms.length === 0) await checkScope(api, { cluster: str(values['cluster']), rack: str(values['rack']) });
      return out(values['json'] ? JSON.stringify(ms, null, 2) + '\n' : machineRows(ms));
    }
    case 'add': {
      const { values } = parse(rest, {
        ...COMMON,
        mac: { type: 'string' },
        ...PLACEMENT_FLAGS,
        ...BMC_FLAGS,
        'bmc-driver': { type: 'string' },
        'bmc-system-id': { type: 'string' },
        'bmc-tls-fingerprint': { type: 'string' },
        'bmc-no-verify-tls': { type: 'boolean' },
        'sol-capture': { type: 'boolean' },
      });
      if (values['help']) return out(MACHINES_HELP);
      const bmcAddress = str(values['bmc-address']);
      const body = {
        mac: str(values['mac']),
        hostname: str(values['hostname']),
        role: str(values['role']),
        cluster: str(values['cluster']),
        ip: str(values['ip']),
        rack: str(values['rack']),
        installDisk: str(values['install-disk']),
        unit: values['unit'] !== undefined ? unitOf(values['unit']) : undefined,
        bmc: bmcAddress
          ? {
              driver: str(values['bmc-driver']) ?? 'ipmi',
              address: bmcAddress,
              port: values['bmc-port'] ? Number(values['bmc-port']) : undefined,
              username: str(values['bmc-username']),
              password: await bmcPassword(values, bmcAddress),
              cipherSuite: values['bmc-cipher-suite'] ? Number(values['bmc-cipher-suite']) : undefined,
              systemId: str(values['bmc-system-id']),
              tlsFingerprint: str(values['bmc-tls-fingerprint']),
              verifyTls: values['bmc-no-verify-tls'] ? false : undefined,
              solCapture: values['sol-capture'] ? true : undefined,
            }
          : undefined,
        ...bootOptions(values),
      };
      const m = await client(values).request<MachineJson & { warnings?: string[] }>('POST', '/machines', body);
      return out(values['json'] ? JSON.stringify(m, null, 2) + '\n' : machineRows([m]) + warningLines(m.warnings));
    }
    case 'set': {
      const { values, positionals } = parse(
        rest,
        {
          ...COMMON,
          ...PLACEMENT_FLAGS,
          ...BMC_FLAGS,
          ...BMC_SET_FLAGS,
        },
        1,
      );
      if (values['help']) return out(MACHINES_HELP);
      const mac = positionals[0];
      if (!mac) throw new UsageError('machines set: give the MAC');
      const patch: Record<string, unknown> = Object.fromEntries(
        ['hostname', 'role', 'cluster', 'ip', 'rack', 'install-disk'].map((k) => [k === 'install-disk' ? 'installDisk' : k, clearable(values[k])]).filter(([, v]) => v !== undefined),
      );
      if (values['unit'] !== undefined) patch['unit'] = values['unit'] === 'none' ? null : unitOf(values['unit']);
      // The BMC patch merges on the server: only the BMC fields given change.
      const bmc: Record<string, unknown> = {};
      if (str(values['bmc-address']) !== undefined) bmc['address'] = str(values['bmc-address']);
      if (str(values['bmc-username']) !== undefined) bmc['username'] = str(values['bmc-username']);
      if (str(values['bmc-port']) !== undefined) bmc['port'] = values['bmc-port'] === 'default' ? null : Number(values['bmc-port']);
      if (str(values['bmc-cipher-suite']) !== undefined) bmc['cipherSuite'] = values['bmc-cipher-suite'] === 'default' ? null : Number(values['bmc-cipher-suite']);
      Object.assign(bmc, bmcSettingsPatch(values));
      // A password is asked for only when one is given some way: setting other fields keeps the stored one.
      if (values['bmc-password'] !== undefined || values['bmc-password-file'] !== undefined || process.env['RACKSMITH_BMC_PASSWORD']) bmc['password'] = await bmcPassword(values, null);
      if (Object.keys(bmc).length > 0) patch['bmc'] = bmc;
      Object.assign(patch, bootOptions(values));
      if (Object.keys(patch).length === 0) throw new UsageError('machines set: nothing to change (give --hostname, --role, --cluster, --ip, --rack, --unit, --install-disk, --boot-loader, --secure-boot, --sol-capture or a --bmc-… flag)');
      const m = await client(values).request<MachineJson & { warnings?: string[] }>('PATCH', `/machines/${encodeURIComponent(mac)}`, patch);
      return out(values['json'] ? JSON.stringify(m, null, 2) + '\n' : machineRows([m]) + warningLines(m.warnings));
    }
    case 'rm': {
      const { values, positionals } = parse(rest, { ...COMMON, force: { type: 'boolean' } }, 1);
      if (values['help']) return out(MACHINES_HELP);
      const mac = positionals[0];
      if (!mac) throw new UsageError('machines rm: give the MAC');
      const r = await client(values).request<{ removal?: string; request?: string; cluster?: string } | string>('DELETE', `/machines/${encodeURIComponent(mac)}${values['force'] ? '?force=true' : ''}`);
      // A node of a cluster leaves it first; its record goes once it is out.
      if (typeof r === 'object' && r?.removal === 'pending') return out(values['json'] ? JSON.stringify(r, null, 2) + '\n' : `${mac} leaves cluster ${r.cluster ?? '?'} first (request ${r.request ?? '?'}); its record is deleted once it is out: racksmith machines events ${mac}\n`);
      return out(values['json'] ? JSON.stringify({ deleted: mac }) + '\n' : `deleted ${mac}\n`);
    }
    case 'import': {
      const { values, positionals } = parse(rest, { ...COMMON, update: { type: 'boolean' } }, 1);
      if (values['help']) return out(MACHINES_HELP);
      const file = positionals[0];
      if (!file) throw new UsageError('machines import: give the CSV file');
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
      const result = await client(values).request<{ imported: number; created: number; updated: number; unchanged: number; delimiter: string; machines: MachineJson[]; warnings?: string[] }>(
        'POST',
        `/machines/import${values['update'] ? '?mode=upsert' : ''}`,
        text,
        'text/csv',
      );
      if (values['json']) return out(JSON.stringify(result, null, 2) + '\n');
      const how = values['update'] ? ` (${result.created} new, ${result.updated} updated, ${result.unchanged} unchanged)` : '';
      return out(`imported ${result.imported} machine(s)${how}\n` + machineRows(result.machines) + warningLines(result.warnings));
    }
    case 'events': {
      const { values, positionals } = parse(rest, { ...COMMON, type: { type: 'string' }, limit: { type: 'string' } }, 1);
      if (values['help']) return out(MACHINES_HELP);
      const mac = positionals[0];
      if (!mac) throw new UsageError('machines events: give the MAC');
      const limit = str(values['limit']) ?? '100';
      if (!/^\d{1,5}$/.test(limit) || Number(limit) < 1 || Number(limit) > 10_000) throw new UsageError('--limit must be a number from 1 to 10000');
      const q = new URLSearchParams({ mac, limit });
      if (str(values['type'])) q.set('type', str(values['type']) as string);
      const api = client(values);
      const evs = await api.request<EventJson[]>('GET', `/events?${q.toString()}`);
      // No history at all: an unknown MAC is an error (a deleted machine's history still shows).
      if (evs.length === 0) await api.request('GET', `/machines/${encodeURIComponent(mac)}`);
      if (values['json']) return out(JSON.stringify(evs, null, 2) + '\n');
      return out(table(['time', 'type', 'source', 'message'], evs.map((e) => [e.at.replace(/\.\d+Z$/, 'Z'), e.type, e.source, e.message])));
    }
    case 'power':
      return machinePowerCommand(rest, client, out);
    case 'identify':
      return identifyCommand(rest, client, out);
    case 'console':
      return consoleCommand(rest, client, out);
    case 'reimage': {
      const code = await reimageCommand(rest, client, out);
      if (code !== 0) process.exitCode = code;
      return;
    }
    default:
      throw new UsageError(`machines: unknown subcommand "${sub}" (list, add, set, rm, import, events, power, reimage, identify, console)`);
  }
}

export async function clustersCommand(args: readonly string[], client: ClientFactory, out: Out): Promise<void> {
  const [sub, ...rest] = args;
  if (!sub) throw new UsageError('clusters: give a subcommand (list, create, show, preflight, delete, retry, kubeconfig, upgrade)');
  if (sub === '--help' || sub === '-h') return out(CLUSTERS_HELP);
  const clusterRows = (cs: readonly ClusterJson[]): string =>
    table(['name', 'os', 'install', 'kubernetes', 'runtime', 'cni', 'endpoint', 'machines', 'state'], cs.map((c) => [c.name, c.os ?? (c.ubuntuRelease ? `ubuntu-${c.ubuntuRelease}` : null), c.installMethod ?? null, c.kubernetesVersion, c.containerRuntime, c.cni, c.controlPlaneEndpoint, c.machineCount, c.state]));
  switch (sub) {
    case 'list': {
      const { values } = parse(rest, COMMON);
      if (values['help']) return out(CLUSTERS_HELP);
      const cs = await client(values).request<ClusterJson[]>('GET', '/clusters');
      return out(values['json'] ? JSON.stringify(cs, null, 2) + '\n' : clusterRows(cs));
    }
    case 'create': {
      const fields = ['name', 'os', 'ubuntu-release', 'install-method', 'install-disk-rule', 'image-url', 'image-sha256', 'kubernetes-version', 'container-runtime', 'cni', 'pod-subnet', 'service-subnet', 'control-plane-endpoint', 'vip'];
      const { values } = parse(rest, { ...COMMON, ...Object.fromEntries(fields.map((f) => [f, { type: 'string' as const }])) });
      if (values['help']) return out(CLUSTERS_HELP);
      const body = Object.fromEntries(fields.map((f) => [f.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()), str(values[f])]).filter(([, v]) => v !== undefined));
      const c = await client(values).request<ClusterJson>('POST', '/clusters', body);
      return out(values['json'] ? JSON.stringify(c, null, 2) + '\n' : clusterRows([c]));
    }
    case 'show': {
      const { values, positionals } = parse(rest, COMMON, 1);
      if (values['help']) return out(CLUSTERS_HELP);
      const name = positionals[0];
      if (!name) throw new UsageError('clusters show: give the cluster name');
      const c = await client(values).request<ClusterJson>('GET', `/clusters/${encodeURIComponent(name)}`);
      if (values['json']) return out(JSON.stringify(c, null, 2) + '\n');
      let text = clusterRows([c]) + warningLines(c.warnings) + '\n' + machineRows(c.machines ?? []);
      if (c.steps && c.steps.length > 0) {
        text += '\n' + table(['step', 'machine', 'state', 'started', 'took', 'error'], c.steps.map((s) => [s.id ?? s.name, s.machine, s.state, s.startedAt?.replace(/\.\d+Z$/, 'Z') ?? null, duration(s.seconds), s.error ?? null]));
      }
      // Why nothing moves, in the orchestrator's words: what a tech acts on.
      const waiting = c.orchestration?.waiting ?? [];
      if (waiting.length > 0) text += '\nwaiting:\n' + waiting.map((w) => `  - ${w}\n`).join('');
      // Which racksmith drives it (several instances on one database: one at a time).
      const lock = c.orchestration?.lock;
      if (lock) text += `\ndriven by ${lock.holder} (lock until ${lock.expiresAt.replace(/\.\d+Z$/, 'Z')})\n`;
      return out(text);
    }
    case 'delete': {
      const { values, positionals } = parse(rest, COMMON, 1);
      if (values['help']) return out(CLUSTERS_HELP);
      const name = positionals[0];
      if (!name) throw new UsageError('clusters delete: give the cluster name');
      await client(values).request('DELETE', `/clusters/${encodeURIComponent(name)}`);
      return out(values['json'] ? JSON.stringify({ deleted: name }) + '\n' : `deleted cluster ${name}\n`);
    }
    case 'retry': {
      const { values, positionals } = parse(rest, COMMON, 1);
      if (values['help']) return out(CLUSTERS_HELP);
      const name = positionals[0];
      if (!name) throw new UsageError('clusters retry: give the cluster name');
      const r = await client(values).request<{ retried: { machines: string[]; steps: string[] } }>('POST', `/clusters/${encodeURIComponent(name)}/retry`);
      return out(values['json'] ? JSON.stringify(r, null, 2) + '\n' : `retrying ${r.retried.steps.length} step(s) on ${r.retried.machines.length} machine(s)${r.retried.machines.length ? ': ' + r.retried.machines.join(', ') : ''}\n`);
    }
    case 'kubeconfig': {
      const { values, positionals } = parse(rest, COMMON, 1);
      if (values['help']) return out(CLUSTERS_HELP);
      const name = positionals[0];
      if (!name) throw new UsageError('clusters kubeconfig: give the cluster name');
      return out(await client(values).request<string>('GET', `/clusters/${encodeURIComponent(name)}/kubeconfig`));
    }
    case 'upgrade': {
      const code = await upgradeCommand(rest, client, out);
      if (code !== 0) process.exitCode = code;
      return;
    }
    default:
      throw new UsageError(`clusters: unknown subcommand "${sub}" (list, create, show, preflight, delete, retry, kubeconfig, upgrade)`);
  }
}

/**
 * `clusters upgrade NAME --kubernetes-version V [--max-unavailable N] [--wait [--timeout S]]`, or
 * `--pause|--resume|--abort`. With --wait it follows the upgrade, one line per node change, and
 * exits 0 when it is done, 1 when it stopped (aborted, or waiting on a failure), 2 on timeout.
 */
async function upgradeCommand(rest: readonly string[], client: ClientFactory, out: Out): Promise<number> {
  const { values, positionals } = parse(
    rest,
    { ...COMMON, 'kubernetes-version': { type: 'string' }, 'max-unavailable': { type: 'string' }, pause: { type: 'boolean' }, resume: { type: 'boolean' }, abort: { type: 'boolean' }, wait: { type: 'boolean' }, timeout: { type: 'string' }, force: { type: 'boolean' } },
    1,
  );
  if (values['help']) {
    out(CLUSTERS_HELP);
    return 0;
  }
  const name = positionals[0];
  if (!name) throw new UsageError('clusters upgrade: give the cluster name');
  const c = client(values);
  const path = `/clusters/${encodeURIComponent(name)}/upgrade`;
  const actions = (['pause', 'resume', 'abort'] as const).filter((a) => values[a]);
  if (actions.length > 1) throw new UsageError('clusters upgrade: one of --pause, --resume, --abort');
  const version = str(values['kubernetes-version']);
  if (actions.length === 0 && !version) throw new UsageError('clusters upgrade: give --kubernetes-version (or --pause, --resume, --abort)');
  const max = str(values['max-unavailable']);
  if (max !== undefined && !/^\d+$/.test(max)) throw new UsageError('clusters upgrade: --max-unavailable takes a whole number');
  const r = actions[0]
    ? await c.request<{ upgrade: NonNullable<ClusterJson['upgrade']> }>('POST', `${path}/${actions[0]}`, {})
    : await c.request<{ upgrade: NonNullable<ClusterJson['upgrade']> }>('POST', path, { kubernetesVersion: version, ...(max ? { maxUnavailable: Number(max) } : {}), ...(values['force'] ? { force: true } : {}) });
  if (values['json'] && !values['wait']) {
    out(JSON.stringify(r, null, 2) + '\n');
    return 0;
  }
  out(`upgrade ${r.upgrade.id} of ${name}: ${r.upgrade.from} → ${r.upgrade.to}, ${r.upgrade.state}\n`);
  if (!values['wait']) return 0;
  const timeoutMs = Number(str(values['timeout']) ?? 7200) * 1000;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const v = await c.request<ClusterJson>('GET', `/clusters/${encodeURIComponent(name)}`);
    const u = v.upgrade;
    const line = u ? `${u.state}: ${Object.entries(u.nodes ?? {}).map(([n, s]) => `${n} ${s}`).join(', ')}${v.orchestration?.waiting?.[0] ? ` — ${v.orchestration.waiting[0]}` : ''}` : 'no upgrade';
    if (line !== last) out(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
    last = line;
    if (!u || u.state === 'done') {
      out(`cluster ${name} runs Kubernetes ${v.kubernetesVersion}\n`);
      return 0;
    }
    if (u.state === 'aborted' || u.state === 'failed' || v.orchestration?.waiting?.some((w) => w.startsWith('upgrade stopped'))) return 1;
    if (Date.now() > deadline) return 2;
    await new Promise((res) => setTimeout(res, 2000));
  }
}

/** `--boot-loader ipxe|shim-grub|auto|default` and `--secure-boot on|off|unknown` as API fields. */
function bootOptions(values: Record<string, unknown>): { bootLoader?: string | null; secureBoot?: boolean | null } {
  const out: { bootLoader?: string | null; secureBoot?: boolean | null } = {};
  const loader = values['boot-loader'];
  if (typeof loader === 'string') out.bootLoader = loader === 'default' ? null : loader;
  const sb = values['secure-boot'];
  if (typeof sb === 'string') {
    if (!['on', 'off', 'unknown'].includes(sb)) throw new UsageError('--secure-boot: on, off or unknown');
    out.secureBoot = sb === 'unknown' ? null : sb === 'on';
  }
  return out;
}
