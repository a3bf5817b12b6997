import { readFileSync } from 'node:fs';
import type { ApiClient } from './client.js';
import { CLUSTERS_HELP, MACHINES_HELP } from './help.js';
import { parse, UsageError, type Options } from './args.js';
import { table } from './table.js';
import { machinePowerCommand, reimageCommand } from './power-commands.js';
import { diskLabel } from './watch.js';

/** Thin commands over the REST API: what an admin does daily, without curl. */

const COMMON: Options = { url: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } };

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
  machines?: MachineJson[];
  steps?: { id?: string; name?: string; state?: string; machine?: string | null; startedAt?: string | null; endedAt?: string | null; error?: string | null }[];
}

const machineRows = (ms: readonly MachineJson[]): string =>
  table(['mac', 'hostname', 'role', 'cluster', 'ip', 'rack', 'state', 'step', 'disk'], ms.map((m) => [m.mac, m.hostname, m.role, m.cluster, m.ip, m.rack, m.state, m.lastStep, diskLabel(m.installedDisk) ?? m.installDisk ?? null]));

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);
/** `none` clears a field in `set`. */
const clearable = (v: string | boolean | undefined): string | null | undefined => (typeof v === 'string' ? (v === 'none' ? null : v) : undefined);

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
      const ms = await client(values).request<MachineJson[]>('GET', `/machines${q.size ? '?' + q.toString() : ''}`);
      return out(values['json'] ? JSON.stringify(ms, null, 2) + '\n' : machineRows(ms));
    }
    case 'add': {
      const { values } = parse(rest, {
        ...COMMON,
        mac: { type: 'string' },
        hostname: { type: 'string' },
        role: { type: 'string' },
        cluster: { type: 'string' },
        ip: { type: 'string' },
        rack: { type: 'string' },
        'install-disk': { type: 'string' },
        'bmc-address': { type: 'string' },
        'bmc-port': { type: 'string' },
        'bmc-username': { type: 'string' },
        'bmc-password': { type: 'string' },
        'bmc-cipher-suite': { type: 'string' },
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
        bmc: bmcAddress
          ? {
              driver: 'ipmi',
              address: bmcAddress,
              port: values['bmc-port'] ? Number(values['bmc-port']) : undefined,
              username: str(values['bmc-username']),
              password: str(values['bmc-password']) ?? process.env['RACKSMITH_BMC_PASSWORD'],
              cipherSuite: values['bmc-cipher-suite'] ? Number(values['bmc-cipher-suite']) : undefined,
            }
          : undefined,
      };
      const m = await client(values).request<MachineJson>('POST', '/machines', body);
      return out(values['json'] ? JSON.stringify(m, null, 2) + '\n' : machineRows([m]));
    }
    case 'set': {
      const { values, positionals } = parse(rest, { ...COMMON, hostname: { type: 'string' }, role: { type: 'string' }, cluster: { type: 'string' }, ip: { type: 'string' }, rack: { type: 'string' }, 'install-disk': { type: 'string' } }, 1);
      if (values['help']) return out(MACHINES_HELP);
      const mac = positionals[0];
      if (!mac) throw new UsageError('machines set: give the MAC');
      const patch = Object.fromEntries(
        ['hostname', 'role', 'cluster', 'ip', 'rack', 'install-disk'].map((k) => [k === 'install-disk' ? 'installDisk' : k, clearable(values[k])]).filter(([, v]) => v !== undefined),
      );
      if (Object.keys(patch).length === 0) throw new UsageError('machines set: nothing to change (give --hostname, --role, --cluster, --ip, --rack or --install-disk)');
      const m = await client(values).request<MachineJson>('PATCH', `/machines/${encodeURIComponent(mac)}`, patch);
      return out(values['json'] ? JSON.stringify(m, null, 2) + '\n' : machineRows([m]));
    }
    case 'rm': {
      const { values, positionals } = parse(rest, COMMON, 1);
      if (values['help']) return out(MACHINES_HELP);
      const mac = positionals[0];
      if (!mac) throw new UsageError('machines rm: give the MAC');
      await client(values).request('DELETE', `/machines/${encodeURIComponent(mac)}`);
      return out(values['json'] ? JSON.stringify({ deleted: mac }) + '\n' : `deleted ${mac}\n`);
    }
    case 'import': {
      const { values, positionals } = parse(rest, COMMON, 1);
      if (values['help']) return out(MACHINES_HELP);
      const file = positionals[0];
      if (!file) throw new UsageError('machines import: give the CSV file');
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
      const result = await client(values).request<{ imported: number; machines: MachineJson[] }>('POST', '/machines/import', text, 'text/csv');
      return out(values['json'] ? JSON.stringify(result, null, 2) + '\n' : `imported ${result.imported} machine(s)\n` + machineRows(result.machines));
    }
    case 'power':
      return machinePowerCommand(rest, client, out);
    case 'reimage': {
      const code = await reimageCommand(rest, client, out);
      if (code !== 0) process.exitCode = code;
      return;
    }
    default:
      throw new UsageError(`machines: unknown subcommand "${sub}" (list, add, set, rm, import, power, reimage)`);
  }
}

export async function clustersCommand(args: readonly string[], client: ClientFactory, out: Out): Promise<void> {
  const [sub, ...rest] = args;
  if (!sub) throw new UsageError('clusters: give a subcommand (list, create, show)');
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
      const fields = ['name', 'os', 'ubuntu-release', 'install-method', 'install-disk-rule', 'image-url', 'image-sha256', 'kubernetes-version', 'container-runtime', 'cni', 'pod-subnet', 'service-subnet', 'control-plane-endpoint'];
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
      let text = clusterRows([c]) + '\n' + machineRows(c.machines ?? []);
      if (c.steps && c.steps.length > 0) {
        text += '\n' + table(['step', 'machine', 'state', 'started', 'ended', 'error'], c.steps.map((s) => [s.id ?? s.name, s.machine, s.state, s.startedAt ?? null, s.endedAt ?? null, s.error ?? null]));
      }
      return out(text);
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
    default:
      throw new UsageError(`clusters: unknown subcommand "${sub}" (list, create, show, retry, kubeconfig)`);
  }
}
