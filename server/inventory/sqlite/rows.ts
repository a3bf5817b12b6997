import type { Mac } from '../../lib/mac.js';
import type { MachineState } from '../lifecycle.js';
import type { ApiToken, BmcConfig, BmcFactsRecord, Cluster, ClusterUpgrade, InstalledDisk, InventoryEvent, Machine, PlanMachine, SshHostKey } from '../model.js';

/** Row shapes as SQLite returns them, and their mapping to the model. */

export interface ClusterRow {
  name: string;
  ubuntu_release: string;
  kubernetes_version: string;
  container_runtime: string;
  cni: string;
  pod_subnet: string | null;
  service_subnet: string | null;
  control_plane_endpoint: string | null;
  state: string;
  created_at: string;
  updated_at: string;
  vip?: string | null;
  upgrade?: string | null;
  os: string;
  install_method: string;
  install_disk_rule: string;
  image_url: string | null;
  image_sha256: string | null;
}

export function clusterFromRow(r: ClusterRow): Cluster {
  return {
    name: r.name,
    ubuntuRelease: r.ubuntu_release === '' ? null : (r.ubuntu_release as Cluster['ubuntuRelease']),
    os: r.os as Cluster['os'],
    installMethod: r.install_method as Cluster['installMethod'],
    installDiskRule: r.install_disk_rule as Cluster['installDiskRule'],
    imageUrl: r.image_url,
    imageSha256: r.image_sha256,
    kubernetesVersion: r.kubernetes_version,
    containerRuntime: r.container_runtime as Cluster['containerRuntime'],
    cni: r.cni as Cluster['cni'],
    podSubnet: r.pod_subnet,
    serviceSubnet: r.service_subnet,
    controlPlaneEndpoint: r.control_plane_endpoint,
    state: r.state as Cluster['state'],
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    vip: r.vip ?? null,
    upgrade: r.upgrade ? (JSON.parse(r.upgrade) as ClusterUpgrade) : null,
  };
}

export interface MachineRow {
  mac: string;
  hostname: string | null;
  role: string | null;
  cluster: string | null;
  ip: string | null;
  rack: string | null;
  unit: number | null;
  bmc_driver: string | null;
  bmc_address: string | null;
  bmc_port: number | null;
  bmc_username: string | null;
  bmc_password_sealed: string | null;
  bmc_cipher_suite: number | null;
  bmc_options: string | null;
  bmc_facts: string | null;
  state: string;
  failed_from: string | null;
  failed_step: string | null;
  failed_reason: string | null;
  arch: string | null;
  firmware: string | null;
  vendor_class: string | null;
  uuid: string | null;
  last_step: string | null;
  boot_loader: string | null;
  secure_boot: number | null;
  secure_boot_seen: string | null;
  bootfile: string | null;
  bootfile_at: string | null;
  loader_at: string | null;
  seed_token_hash: string | null;
  seed_token_sealed: string | null;
  seed_token_address: string | null;
  instance_id: string | null;
  host_keys: string;
  first_seen: string | null;
  last_seen: string | null;
  state_changed_at: string;
  created_at: string;
  updated_at: string;
  install_disk: string | null;
  installed_disk: string | null;
  install_started_at: string | null;
  power_state: string | null;
  power_state_at: string | null;
}

/**
 * The columns a Machine is built from: everything but the sealed values (BMC password, seed
 * token), which only their own accessors read, so listing 5,000 machines never loads them.
 * Engine-neutral SQL (PostgreSQL's rows map through the same code): the flag is a 0/1 integer on both.
 */
export const MACHINE_COLUMNS = [
  'mac', 'hostname', 'role', 'cluster', 'ip', 'rack', 'bmc_driver', 'bmc_address', 'bmc_port', 'bmc_username',
  'CASE WHEN bmc_password_sealed IS NULL THEN 0 ELSE 1 END AS bmc_password_set', 'bmc_cipher_suite', 'state', 'failed_from', 'failed_step',
  'failed_reason', 'arch', 'firmware', 'vendor_class', 'uuid', 'last_step', 'instance_id', 'host_keys', 'first_seen',
  'last_seen', 'state_changed_at', 'created_at', 'updated_at',
  'boot_loader', 'secure_boot', 'secure_boot_seen', 'bootfile', 'bootfile_at', 'loader_at',
  'bmc_options', 'bmc_facts', 'install_disk', 'installed_disk', 'install_started_at',
  'unit', 'power_state', 'power_state_at',
].join(', ');

/** The columns of a PlanMachine (MachineRepo.planFacts), on both engines. */
export const PLAN_COLUMNS = 'mac, hostname, role, cluster, ip, state';
export type PlanRow = Pick<MachineRow, 'mac' | 'hostname' | 'role' | 'cluster' | 'ip' | 'state'>;

export function planMachineFromRow(r: PlanRow): PlanMachine {
  return { mac: r.mac as Mac, hostname: r.hostname, role: r.role as Machine['role'], cluster: r.cluster, ip: r.ip, state: r.state as MachineState };
}

export type MachineViewRow = Omit<MachineRow, 'bmc_password_sealed' | 'seed_token_hash' | 'seed_token_sealed' | 'seed_token_address'> & { bmc_password_set: number };

const NO_HOST_KEYS: readonly SshHostKey[] = Object.freeze([]);

export function machineFromRow(r: MachineRow | MachineViewRow): Machine {
  return {
    mac: r.mac as Mac,
    hostname: r.hostname,
    role: r.role as Machine['role'],
    cluster: r.cluster,
    ip: r.ip,
    rack: r.rack,
    unit: r.unit,
    bmc:
      r.bmc_driver === null
        ? null
        : {
            driver: r.bmc_driver === 'redfish' ? 'redfish' : 'ipmi',
            address: r.bmc_address ?? '',
            port: r.bmc_port,
            username: r.bmc_username ?? '',
            cipherSuite: r.bmc_cipher_suite,
            hasPassword: 'bmc_password_set' in r ? r.bmc_password_set === 1 : r.bmc_password_sealed !== null,
            ...bmcOptionsFromJson(r.bmc_options),
          },
    bmcFacts: r.bmc_facts === null ? null : (JSON.parse(r.bmc_facts) as BmcFactsRecord),
    state: r.state as MachineState,
    failedFrom: r.failed_from as MachineState | null,
    failedStep: r.failed_step,
    failedReason: r.failed_reason,
    arch: r.arch,
    firmware: r.firmware as Machine['firmware'],
    vendorClass: r.vendor_class,
    uuid: r.uuid,
    lastStep: r.last_step,
    bootLoader: r.boot_loader as Machine['bootLoader'],
    secureBoot: r.secure_boot === null ? null : r.secure_boot === 1,
    secureBootSeen: r.secure_boot_seen as Machine['secureBootSeen'],
    bootfile: r.bootfile,
    bootfileAt: r.bootfile_at,
    loaderAt: r.loader_at,
    instanceId: r.instance_id,
    hostKeys: r.host_keys === '[]' ? NO_HOST_KEYS : (JSON.parse(r.host_keys) as SshHostKey[]),
    firstSeen: r.first_seen,
    lastSeen: r.last_seen,
    installDisk: r.install_disk,
    installedDisk: r.installed_disk === null ? null : (JSON.parse(r.installed_disk) as InstalledDisk),
    installStartedAt: r.install_started_at,
    stateChangedAt: r.state_changed_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    powerState: r.power_state as Machine['powerState'],
    powerStateAt: r.power_state_at,
  };
}

type BmcOptions = Pick<BmcConfig, 'systemId' | 'verifyTls' | 'tlsFingerprint' | 'solCapture'>;

/** The `bmc_options` column: driver-specific BMC settings as JSON, with their defaults. */
export function bmcOptionsFromJson(json: string | null): BmcOptions {
  const o = json === null ? {} : (JSON.parse(json) as Partial<BmcOptions>);
  return { systemId: o.systemId ?? null, verifyTls: o.verifyTls ?? true, tlsFingerprint: o.tlsFingerprint ?? null, solCapture: o.solCapture ?? null };
}

export function bmcOptionsToJson(b: { readonly systemId?: string | null | undefined; readonly verifyTls?: boolean | undefined; readonly tlsFingerprint?: string | null | undefined; readonly solCapture?: boolean | null | undefined }): string | null {
  const o: { -readonly [K in keyof BmcOptions]?: BmcOptions[K] } = {};
  if (b.systemId) o.systemId = b.systemId;
  if (b.verifyTls === false) o.verifyTls = false;
  if (b.tlsFingerprint) o.tlsFingerprint = b.tlsFingerprint;
  if (b.solCapture !== undefined && b.solCapture !== null) o.solCapture = b.solCapture;
  return Object.keys(o).length ? JSON.stringify(o) : null;
}

export interface EventRow {
  id: number;
  at: string;
  mac: string | null;
  cluster: string | null;
  type: string;
  source: string | null;
  message: string;
  data: string | null;
}

export function eventFromRow(r: EventRow): InventoryEvent {
  return {
    id: r.id,
    at: r.at,
    mac: r.mac as Mac | null,
    cluster: r.cluster,
    type: r.type,
    source: r.source,
    message: r.message,
    data: r.data === null ? null : (JSON.parse(r.data) as Record<string, unknown>),
  };
}

export interface TokenRow {
  id: string;
  name: string;
  role: string;
  hash: string;
  created_at: string;
  revoked_at: string | null;
}

export function tokenFromRow(r: TokenRow): ApiToken {
  return { id: r.id, name: r.name, role: r.role as ApiToken['role'], createdAt: r.created_at };
}

/** Maps a SQLite constraint failure to the field an API caller should fix, or null. */
export function constraintField(err: unknown): string | null {
  if (!(err instanceof Error) || !('code' in err)) return null;
  const code = (err as { code: unknown }).code;
  if (code !== 'SQLITE_CONSTRAINT_UNIQUE' && code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') return null;
  const m = /constraint failed: \w+\.(\w+)/.exec(err.message);
  return m?.[1] ?? null;
}
