import type { Mac } from '../lib/mac.js';
import type { MachineState } from './lifecycle.js';
import type { InstallDiskRule, InstallMethod, OsId } from './os.js';

/** The inventory's own words. User-facing JSON is shaped in the HTTP layer, not here. */

export const ROLES = ['loadbalancer', 'control-plane', 'worker'] as const;
export type Role = (typeof ROLES)[number];

export const UBUNTU_RELEASES = ['18.04', '20.04', '22.04', '24.04'] as const;
export type UbuntuRelease = (typeof UBUNTU_RELEASES)[number];

export const CONTAINER_RUNTIMES = ['docker', 'containerd'] as const;
export type ContainerRuntime = (typeof CONTAINER_RUNTIMES)[number];

export const CNIS = ['weave', 'flannel', 'calico'] as const;
export type Cni = (typeof CNIS)[number];

export const CLUSTER_STATES = ['pending', 'bootstrapping', 'ready', 'degraded', 'failed'] as const;
export type ClusterState = (typeof CLUSTER_STATES)[number];

export const TOKEN_ROLES = ['viewer', 'operator', 'admin'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

export const FIRMWARES = ['bios', 'efi'] as const;
export type Firmware = (typeof FIRMWARES)[number];

/**
 * Which boot loader a UEFI machine is sent to: Debian's iPXE (unsigned), the distribution's
 * signed shim → GRUB chain (Secure Boot), or `auto` (the signed chain when the machine is
 * marked Secure Boot, or has no other loader for its architecture). Null on a machine: the site
 * default (`boot-loader` setting).
 */
export const BOOT_LOADERS = ['ipxe', 'shim-grub', 'auto'] as const;
export type BootLoaderSetting = (typeof BOOT_LOADERS)[number];
/** What racksmith last saw of a machine's Secure Boot: GRUB's lockdown, or iPXE running on EFI. */
export const SECURE_BOOT_SEEN = ['enforced', 'off'] as const;
export type SecureBootSeen = (typeof SECURE_BOOT_SEEN)[number];

export interface Cluster {
  readonly name: string;
  /** The Ubuntu release of `os`; null for Debian. */
  readonly ubuntuRelease: UbuntuRelease | null;
  readonly os: OsId;
  readonly installMethod: InstallMethod;
  readonly installDiskRule: InstallDiskRule;
  /** The OS image of image deployment (a URL or a file name in the artifacts directory); null: the settings' or the built-in one. */
  readonly imageUrl: string | null;
  /** Its expected SHA-256 (hex); null: the settings', else what racksmith computes of the file it serves. */
  readonly imageSha256: string | null;
  readonly kubernetesVersion: string;
  readonly containerRuntime: ContainerRuntime;
  readonly cni: Cni;
  readonly podSubnet: string | null;
  readonly serviceSubnet: string | null;
  /** Explicit endpoint; null means "the load balancer machine's IP:6443". */
  readonly controlPlaneEndpoint: string | null;
  readonly state: ClusterState;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** The API's virtual IP held by a pair of load balancers (keepalived); the endpoint is then `vip:6443`. */
  readonly vip?: string | null;
  /** The rolling upgrade under way or last run (server/orchestrator/upgrade.ts); null when there never was one. */
  readonly upgrade?: ClusterUpgrade | null;
}

export const UPGRADE_STATES = ['running', 'paused', 'aborted', 'done', 'failed'] as const;
export type UpgradeState = (typeof UPGRADE_STATES)[number];

/** A rolling upgrade by reimage, as the store keeps it: the orchestrator derives its progress from step records. */
export interface ClusterUpgrade {
  /** Distinguishes this upgrade's step records (`upgrade-node:<mac>:<id>`). */
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly state: UpgradeState;
  /** Workers reimaged at once. */
  readonly maxUnavailable: number;
  readonly requestedAt: string;
  readonly updatedAt: string;
  /** Why it stopped (failed), or who paused/aborted it. */
  readonly reason: string | null;
  /** The cluster's ClusterConfiguration names the new version: machines installed from now on get it. */
  readonly controlPlaneMoved: boolean;
}

export const BMC_DRIVER_NAMES = ['ipmi', 'redfish'] as const;
export type BmcDriverName = (typeof BMC_DRIVER_NAMES)[number];

export interface BmcConfig {
  readonly driver: BmcDriverName;
  readonly address: string;
  readonly port: number | null;
  readonly username: string;
  /** IPMI lanplus cipher suite; null means the driver's default order (17, then 3). */
  readonly cipherSuite: number | null;
  readonly hasPassword: boolean;
  /** Redfish: the ComputerSystem id; null means the BMC's only system. */
  readonly systemId: string | null;
  /** Redfish: check the certificate against the system's CAs (default true). */
  readonly verifyTls: boolean;
  /** Redfish: SHA-256 fingerprint of the one certificate to accept (self-signed BMCs). */
  readonly tlsFingerprint: string | null;
  /** Serial console capture during installs (IPMI SOL); null means the rack's setting. */
  readonly solCapture: boolean | null;
}

/** What the BMC reported about its machine at the last status call that read it. */
export interface BmcFactsRecord {
  readonly source: BmcDriverName;
  readonly manufacturer: string | null;
  readonly model: string | null;
  readonly serial: string | null;
  readonly biosVersion: string | null;
  readonly firmwareVersion: string | null;
  /** The system's NIC MACs (Redfish); null when the BMC does not list them. */
  readonly nics: readonly string[] | null;
  readonly collectedAt: string;
}

/** The disk an installer reported it installed on. */
export interface InstalledDisk {
  readonly name: string;
  readonly path: string;
  /** nvme, sata, sas, virtio, mmc, usb, … */
  readonly kind: string;
  readonly sizeBytes: number;
  readonly serial: string | null;
  readonly model: string | null;
  /** What picked it: the machine's installDisk, or `rule <name>`. */
  readonly chosenBy: string | null;
  readonly reportedAt: string;
}

export interface SshHostKey {
  readonly type: string;
  readonly key: string;
}

export interface Machine {
  readonly mac: Mac;
  readonly hostname: string | null;
  readonly role: Role | null;
  readonly cluster: string | null;
  readonly ip: string | null;
  readonly rack: string | null;
  /** Rack unit (1 = the bottom slot) from the sheet, for a rack view in the rack's own order. */
  readonly unit: number | null;
  readonly bmc: BmcConfig | null;
  readonly bmcFacts: BmcFactsRecord | null;
  readonly state: MachineState;
  readonly failedFrom: MachineState | null;
  readonly failedStep: string | null;
  readonly failedReason: string | null;
  readonly arch: string | null;
  readonly firmware: Firmware | null;
  readonly vendorClass: string | null;
  readonly uuid: string | null;
  readonly lastStep: string | null;
  /** The machine's boot loader choice; null: the site default. */
  readonly bootLoader: BootLoaderSetting | null;
  /** The operator's mark: Secure Boot is on (true), off (false), or not known (null). */
  readonly secureBoot: boolean | null;
  readonly secureBootSeen: SecureBootSeen | null;
  /** The last boot binary served (TFTP or HTTP) and when; and when a boot loader last asked for its script. */
  readonly bootfile: string | null;
  readonly bootfileAt: string | null;
  readonly loaderAt: string | null;
  readonly instanceId: string | null;
  readonly hostKeys: readonly SshHostKey[];
  readonly firstSeen: string | null;
  readonly lastSeen: string | null;
  /** `/dev/...`, `/dev/disk/by-id/...` or `serial:<serial>`; null: the cluster's installDiskRule picks. */
  readonly installDisk: string | null;
  /** The disk the last install used, as its installer reported it. */
  readonly installedDisk: InstalledDisk | null;
  /** When the current install attempt started (the machine entered `provisioning`); null when none runs. */
  readonly installStartedAt: string | null;
  readonly stateChangedAt: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** The power state last read from the BMC (a status call) or set by a power action, and when. */
  readonly powerState: KnownPowerState | null;
  readonly powerStateAt: string | null;
}

/**
 * What the orchestrator's plan reads of a machine. The periodic look at every cluster reads only
 * these columns of every machine (MachineRepo.planFacts), not whole rows.
 */
export type PlanMachine = Pick<Machine, 'mac' | 'hostname' | 'role' | 'cluster' | 'ip' | 'state'>;

export const KNOWN_POWER_STATES = ['on', 'off'] as const;
export type KnownPowerState = (typeof KNOWN_POWER_STATES)[number];

/** Rack units a sheet may give: 1 (the bottom) up to the tallest racks sold. */
export const MAX_RACK_UNIT = 64;

export interface InventoryEvent {
  readonly id: number;
  readonly at: string;
  readonly mac: Mac | null;
  readonly cluster: string | null;
  /** e.g. `state`, `dhcp.discover`, `tftp.transfer`, `http.seed`, `phone-home`, `power`, `orchestration`. */
  readonly type: string;
  readonly source: string | null;
  readonly message: string;
  readonly data: Record<string, unknown> | null;
}

/**
 * A DHCP lease as stored: one row per address, so an address is never held by two MACs.
 * `bound` until `expiresAt` (after which the address is free again, but the row keeps the MAC so
 * that the client gets the same address back); `released` by the client; `declined` when a
 * client found the address in use (RFC 2131 §4.3.3): quarantined until `expiresAt`, no MAC.
 */
export const LEASE_STATES = ['bound', 'released', 'declined'] as const;
export type LeaseState = (typeof LEASE_STATES)[number];

export interface Lease {
  readonly ip: string;
  readonly mac: Mac | null;
  readonly state: LeaseState;
  /** Option 61 as hex, when the client sent one. */
  readonly clientId: string | null;
  readonly hostname: string | null;
  readonly startsAt: string;
  readonly expiresAt: string;
  readonly updatedAt: string;
}

export interface ApiToken {
  readonly id: string;
  readonly name: string;
  readonly role: TokenRole;
  readonly createdAt: string;
}

export function roleAtLeast(have: TokenRole, need: TokenRole): boolean {
  return TOKEN_ROLES.indexOf(have) >= TOKEN_ROLES.indexOf(need);
}
