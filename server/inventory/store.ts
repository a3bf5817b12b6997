import type { Mac } from '../lib/mac.js';
import type { MachineEventType, MachineState } from './lifecycle.js';
import type {
  ApiToken,
  BmcDriverName,
  BmcFactsRecord,
  BootLoaderSetting,
  Cluster,
  ClusterState,
  ClusterUpgrade,
  Cni,
  ContainerRuntime,
  Firmware,
  InstalledDisk,
  InventoryEvent,
  Lease,
  KnownPowerState,
  Machine,
  PlanMachine,
  SecureBootSeen,
  Role,
  SshHostKey,
  TokenRole,
  UbuntuRelease,
} from './model.js';
import type { InstallDiskRule, InstallMethod, OsId } from './os.js';

/**
 * The inventory as the services see it: a few repositories, each a narrow interface. Services
 * depend only on the repositories they use; `main.ts` hands them the SQLite implementation.
 * Methods are async so that a networked store (PostgreSQL) can implement the same interface.
 */

/**
 * A cluster's OS is `os`, or the older `ubuntuRelease` (one of them); `installMethod` defaults to
 * the OS's own installer, `installDiskRule` to `smallest`.
 */
export interface NewCluster {
  readonly name: string;
  readonly ubuntuRelease?: UbuntuRelease | undefined;
  readonly os?: OsId | undefined;
  readonly installMethod?: InstallMethod | undefined;
  readonly installDiskRule?: InstallDiskRule | undefined;
  readonly imageUrl?: string | null | undefined;
  readonly imageSha256?: string | null | undefined;
  readonly kubernetesVersion: string;
  readonly containerRuntime: ContainerRuntime;
  readonly cni: Cni;
  readonly podSubnet?: string | null | undefined;
  readonly serviceSubnet?: string | null | undefined;
  readonly controlPlaneEndpoint?: string | null | undefined;
  readonly vip?: string | null | undefined;
}
export type ClusterPatch = Partial<Omit<NewCluster, 'name'>>;

export interface ClusterRepo {
  create(input: NewCluster): Promise<Cluster>;
  get(name: string): Promise<Cluster | null>;
  list(): Promise<Cluster[]>;
  update(name: string, patch: ClusterPatch): Promise<Cluster>;
  setState(name: string, state: ClusterState, message: string): Promise<Cluster>;
  /**
   * Records the cluster's rolling upgrade (null clears it) with an event; `kubernetesVersion`
   * moves the cluster's version in the same write (the upgrade's last node is done).
   */
  setUpgrade(name: string, upgrade: ClusterUpgrade | null, message: string, opts?: { readonly kubernetesVersion?: string; readonly source?: string }): Promise<Cluster>;
  /** Refused (conflict) while machines still belong to the cluster. */
  delete(name: string): Promise<void>;
}

export interface NewBmc {
  readonly driver: BmcDriverName;
  readonly address: string;
  readonly port?: number | null | undefined;
  readonly username: string;
  readonly password: string;
  readonly cipherSuite?: number | null | undefined;
  readonly systemId?: string | null | undefined;
  readonly verifyTls?: boolean | undefined;
  readonly tlsFingerprint?: string | null | undefined;
  readonly solCapture?: boolean | null | undefined;
}

export interface NewMachine {
  readonly mac: Mac;
  readonly hostname: string;
  readonly role: Role;
  readonly cluster: string;
  readonly ip?: string | null | undefined;
  readonly rack?: string | null | undefined;
  readonly unit?: number | null | undefined;
  readonly bmc?: NewBmc | null | undefined;
  readonly installDisk?: string | null | undefined;
  readonly bootLoader?: BootLoaderSetting | null | undefined;
  readonly secureBoot?: boolean | null | undefined;
}

/**
 * `null` clears a field; an absent key leaves it. A BMC patch merges: each absent BMC field keeps
 * its stored value (the password too), `port`/`cipherSuite` null go back to the default.
 */
export interface MachinePatch {
  readonly hostname?: string | null | undefined;
  readonly role?: Role | null | undefined;
  readonly cluster?: string | null | undefined;
  readonly ip?: string | null | undefined;
  readonly rack?: string | null | undefined;
  readonly unit?: number | null | undefined;
  readonly bmc?: BmcPatch | null | undefined;
  readonly installDisk?: string | null | undefined;
  readonly bootLoader?: BootLoaderSetting | null | undefined;
  readonly secureBoot?: boolean | null | undefined;
}

export interface BmcPatch {
  readonly driver?: NewBmc['driver'] | undefined;
  readonly address?: string | undefined;
  readonly port?: number | null | undefined;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly cipherSuite?: number | null | undefined;
  readonly systemId?: string | null | undefined;
  readonly verifyTls?: boolean | undefined;
  readonly tlsFingerprint?: string | null | undefined;
  readonly solCapture?: boolean | null | undefined;
}

/** A step of the boot chain that says whether the machine got past its bootfile. */
export type BootStep =
  /** A boot binary (iPXE, shim, GRUB) was sent to the machine's firmware. */
  | { readonly kind: 'bootfile'; readonly file: string }
  /** A boot loader asked for its script or config: the bootfile ran. */
  | { readonly kind: 'loader'; readonly secureBoot: SecureBootSeen | null };

export interface MachineFilter {
  readonly cluster?: string | undefined;
  readonly role?: Role | undefined;
  readonly state?: MachineState | undefined;
  readonly rack?: string | undefined;
}

/**
 * A position in the machine list's order — rack, then hostname, then MAC, a missing rack or
 * hostname first — for keyset paging: the next page starts after it, whatever was inserted or
 * deleted meanwhile.
 */
export interface MachineCursor {
  readonly rack: string | null;
  readonly hostname: string | null;
  readonly mac: Mac;
}

export interface MachinePage {
  readonly limit?: number | undefined;
  readonly after?: MachineCursor | undefined;
}

/** What the boot path learns about a machine when it shows up (DHCP, iPXE). */
export interface Sighting {
  readonly mac: Mac;
  readonly arch?: string | null | undefined;
  readonly firmware?: Firmware | null | undefined;
  readonly vendorClass?: string | null | undefined;
  readonly uuid?: string | null | undefined;
  readonly source: string;
}

/**
 * What serving one boot script records about a known machine, all in one transaction: the
 * lifecycle event the script implies (first, so that a refused one records nothing of the step),
 * the facts the request carried, a new instance id, the event for its history, and its step.
 */
export interface BootScriptRecord {
  readonly sighting: Sighting;
  readonly transition: { readonly event: MachineEventType; readonly message: string } | null;
  readonly instanceId: string | null;
  readonly event: Omit<NewEvent, 'mac' | 'source'>;
  readonly lastStep: string;
  /** The loader asking (the bootfile ran) and the Secure Boot state it showed, or null. */
  readonly loader?: Extract<BootStep, { kind: 'loader' }> | null | undefined;
}

export type BootScriptOutcome = { readonly ok: true } | { readonly ok: false; readonly error: Error };

export interface TransitionContext {
  readonly source: string;
  readonly message?: string | undefined;
  /** For `fail`: the step that failed and why. */
  readonly step?: string | undefined;
  readonly reason?: string | undefined;
  readonly data?: Record<string, unknown> | undefined;
}

export interface ImportRow extends NewMachine {
  /** 1-based data row number in the CSV, for error messages. */
  readonly row: number;
}

/** What an upsert did with one row. */
export interface UpsertResult {
  readonly machine: Machine;
  readonly outcome: 'created' | 'updated' | 'unchanged';
}

export interface MachineRepo {
  create(input: NewMachine): Promise<Machine>;
  get(mac: Mac): Promise<Machine | null>;
  /** The machine whose `ip` is this address (a keyed lookup: `ip` is unique), or null. */
  byIp(ip: string): Promise<Machine | null>;
  /** In list order (see MachineCursor); all of them unless a page is asked for. */
  list(filter?: MachineFilter, page?: MachinePage): Promise<Machine[]>;
  /**
   * Every machine's plan facts (PlanMachine), in no particular order: the orchestrator's periodic
   * look at every cluster reads six columns of each row, not all of them (docs/instances.md).
   */
  planFacts(): Promise<PlanMachine[]>;
  update(mac: Mac, patch: MachinePatch, source: string): Promise<Machine>;
  delete(mac: Mac): Promise<void>;
  /** Every row or none, in one transaction; a conflict names the row and column. */
  importAll(rows: readonly ImportRow[]): Promise<Machine[]>;
  /**
   * A re-imported sheet: rows whose MAC is known update that machine (fields the row leaves
   * empty keep their values), the others are created. Every row or none, like importAll.
   */
  upsertAll(rows: readonly ImportRow[]): Promise<UpsertResult[]>;
  /** The same patch for several machines, all or none; an error names the machine. */
  updateAll(macs: readonly Mac[], patch: MachinePatch, source: string): Promise<Machine[]>;
  /** The power state a BMC call just read or caused, and when. */
  setPowerState(mac: Mac, state: KnownPowerState, at: string): Promise<void>;
  /** Applies the pure lifecycle transition, persists it and appends a `state` event atomically. */
  transition(mac: Mac, event: MachineEventType, ctx: TransitionContext): Promise<Machine>;
  /** Records a sighting; an unknown MAC becomes a `discovered` machine. Returns it and whether it was new. */
  recordSighting(s: Sighting): Promise<{ machine: Machine; created: boolean }>;
  /** The step a tech sees on the machine's tile (`dhcp`, `tftp`, `ipxe`, `installer`…). */
  setLastStep(mac: Mac, step: string): Promise<void>;
  /** Records a bootfile served or a loader seen (and the Secure Boot state it showed). */
  recordBootStep(mac: Mac, step: BootStep): Promise<void>;
  /**
   * Boot steps of many requests recorded in one commit (the boot path's group commit: boot
   * scripts, and the DHCP step journal). Each step is applied whole or not at all: a refused
   * transition fails that step alone, with its error.
   */
  recordBootScripts(steps: readonly BootScriptRecord[]): Promise<BootScriptOutcome[]>;
  bmcPassword(mac: Mac): Promise<string | null>;
  /** Mints a new seed token (invalidating the old one) and returns it in clear, once. */
  rotateSeedToken(mac: Mac): Promise<string>;
  /** The current seed token in clear (it is embedded in the machine's boot script), or null. */
  seedToken(mac: Mac): Promise<string | null>;
  findBySeedToken(token: string): Promise<Machine | null>;
  /**
   * The seed token for a boot script fetched from `address`, bound to that address: the current
   * token when it is unbound or already bound there, else a new one (the old one stops working).
   * Null when the machine has no token. `rebound` is the address the old token was bound to.
   */
  seedTokenFor(mac: Mac, address: string): Promise<{ token: string; rebound: string | null } | null>;
  /** The address the current seed token is bound to, or null. */
  seedAddress(mac: Mac): Promise<string | null>;
  setInstanceId(mac: Mac, instanceId: string): Promise<void>;
  setHostKeys(mac: Mac, keys: readonly SshHostKey[]): Promise<void>;
  /** Records the disk the machine's installer reports it installs on. */
  setInstalledDisk(mac: Mac, disk: Omit<InstalledDisk, 'reportedAt'>): Promise<void>;
  /** Records what the BMC reported (no event, no updated_at: a status call is no edit). */
  setBmcFacts(mac: Mac, facts: BmcFactsRecord): Promise<void>;
}

export interface NewEvent {
  readonly mac?: Mac | null | undefined;
  readonly cluster?: string | null | undefined;
  readonly type: string;
  readonly source?: string | null | undefined;
  readonly message: string;
  readonly data?: Record<string, unknown> | null | undefined;
}

export interface EventQuery {
  readonly mac?: Mac | undefined;
  readonly cluster?: string | undefined;
  /** Only events with a larger id (resume). */
  readonly afterId?: number | undefined;
  /** Only events with a smaller id (paging back through a log). */
  readonly beforeId?: number | undefined;
  /** Only events of this type or its sub-types (`power` also matches `power.job`). */
  readonly type?: string | undefined;
  /** Without afterId: the newest `limit` events (still returned oldest first). */
  readonly newest?: boolean | undefined;
  readonly limit?: number | undefined;
}

/** Which events a retention rule removes: whole families (`dhcp`: every `dhcp.*` type) and exact types. */
export interface EventTypes {
  readonly families: readonly string[];
  readonly exact: readonly string[];
}

export interface EventRepo {
  append(e: NewEvent): Promise<InventoryEvent>;
  list(q: EventQuery): Promise<InventoryEvent[]>;
  /** The id of the newest event (0 when there is none): where a live stream without a resume point starts. */
  latestId(): Promise<number>;
  /** The id of the first event recorded at or after `at` (ISO time), or the next id when there is none: every event below it is older. */
  firstIdSince(at: string): Promise<number>;
  /** Deletes up to `limit` of the oldest events below `belowId` (of `types` only, when given); returns how many. Ids are never reused. */
  prune(belowId: number, types: EventTypes | null, limit: number): Promise<number>;
  /** Called after each appended event (the live stream hangs on this). */
  subscribe(listener: (e: InventoryEvent) => void): () => void;
}

export interface TokenRepo {
  /** Returns the new token in clear, once; only its hash is stored. */
  create(role: TokenRole, name: string): Promise<{ token: string; info: ApiToken }>;
  /** The token's role, or null when unknown or revoked. */
  verify(token: string): Promise<ApiToken | null>;
  list(): Promise<ApiToken[]>;
  revoke(id: string): Promise<void>;
}

export interface LeaseBinding {
  readonly ip: string;
  readonly mac: Mac;
  readonly clientId?: string | null | undefined;
  readonly hostname?: string | null | undefined;
  readonly expiresAt: string;
}

export type BindOutcome =
  | { readonly ok: true; readonly lease: Lease }
  /** `held`: bound (unexpired) to another MAC or quarantined; `reserved`: another machine's `ip`. */
  | { readonly ok: false; readonly reason: 'held' | 'reserved'; readonly holder: Mac | null };

/**
 * DHCP leases. Written before the ACK that announces them goes out, so an acknowledged lease
 * survives a restart or a kill -9. An address is never bound to two MACs: the table has one row
 * per address, and a binding that would take an address another MAC holds is refused.
 */
export interface LeaseRepo {
  /** Every row (the DHCP service loads them once at start). */
  list(): Promise<Lease[]>;
  byIp(ip: string): Promise<Lease | null>;
  byMac(mac: Mac): Promise<Lease | null>;
  /**
   * Binds each address to its MAC, all in one transaction (group commit for a burst of ACKs).
   * A binding moves the MAC off any other address it held. Refusals are reported per binding;
   * the rest commit.
   */
  bindAll(bindings: readonly LeaseBinding[], now: Date): Promise<BindOutcome[]>;
  /** RFC 2131 §4.3.4: the client gives the address back. False when it did not hold it. */
  release(ip: string, mac: Mac, now: Date): Promise<boolean>;
  /** RFC 2131 §4.3.3: the address is in use by someone else; quarantine it until `until`. */
  decline(ip: string, mac: Mac, until: Date, now: Date): Promise<boolean>;
  /** The machine whose `ip` is this address (a reservation), or null. */
  reservedBy(ip: string): Promise<Mac | null>;
}

/** What the DHCP service reads of a machine for each datagram. */
export type MachineFacts = Pick<Machine, 'mac' | 'ip' | 'lastStep' | 'bootLoader' | 'secureBoot'>;

/**
 * Synchronous reads for per-datagram paths. The repositories are async so that another store
 * could stand behind them; the DHCP loop, though, handles tens of thousands of datagrams a
 * second, and a promise per read there costs more than the read itself. Reads only: every write
 * still goes through the repositories.
 */
export interface InventoryLookup {
  /**
   * Every machine's DHCP facts, read in one statement: by MAC, and the reservations (machines
   * with an `ip`) by address. The maps are the caller's to keep and amend.
   */
  directory(): MachineDirectory;
  /**
   * Changes whenever a machine is added or removed or its MAC or address changes through this
   * inventory; a directory read at another revision may be out of date.
   */
  revision(): number;
  /**
   * The MACs of those changes after `revision`, oldest first (a MAC may repeat), or null when
   * they are more than the lookup remembers.
   */
  changedSince(revision: number): readonly string[] | null;
  /** One machine's facts, or null when the inventory does not know the MAC. */
  machine(mac: Mac): MachineFacts | null;
}

export interface MachineDirectory {
  readonly byMac: Map<string, MachineFacts>;
  readonly byIp: Map<string, Mac>;
  /** `revision()` when this was read. */
  readonly revision: number;
}

/** Sealed secrets by scope (`global`, `cluster:<name>`) and name. */
export interface SecretRepo {
  get(scope: string, name: string): Promise<string | null>;
  put(scope: string, name: string, value: string): Promise<void>;
  /**
   * Stores the value only when the name is still free, atomically, and returns what is stored
   * afterwards: the first writer wins, so two racksmith processes never end up with two
   * different cluster CAs.
   */
  putIfAbsent(scope: string, name: string, value: string): Promise<string>;
  delete(scope: string, name?: string): Promise<void>;
}

/**
 * Orchestration progress (the kubeadm bootstrap of a cluster), persisted after every step so
 * that a restart — even kill -9 — resumes where it stopped.
 *
 * A step is identified within its cluster by an id the plan derives from the cluster's facts
 * (`init`, `join:<mac>`, `upload-certs:2`…); saving a step with the same id replaces it.
 */
export const STEP_STATES = ['pending', 'running', 'done', 'skipped', 'failed'] as const;
export type StepState = (typeof STEP_STATES)[number];

export interface StepRecord {
  readonly cluster: string;
  readonly id: string;
  readonly kind: string;
  /** The machine the step runs on (SSH target). */
  readonly mac: Mac | null;
  readonly state: StepState;
  /** How many times it was tried since it was last (re)planned. */
  readonly attempts: number;
  readonly startedAt: string | null;
  readonly endedAt: string | null;
  /** The last lines of its output, secrets already redacted. */
  readonly output: readonly string[];
  readonly error: string | null;
  /** Facts later steps depend on (when certificates were uploaded, which backends the LB got…). */
  readonly data: Readonly<Record<string, unknown>>;
  /** Order of first creation within the cluster. */
  readonly seq: number;
}

export type StepWrite = Omit<StepRecord, 'seq'>;

export interface ClusterLock {
  readonly cluster: string;
  readonly owner: string;
  /** Who holds it, for people: host and process. */
  readonly holder: string;
  readonly expiresAt: string;
}

export interface OrchestrationRepo {
  steps(cluster: string): Promise<StepRecord[]>;
  /** Every cluster's steps, by cluster and in order: the orchestrator's periodic look reads them at once. */
  allSteps(): Promise<StepRecord[]>;
  /** Inserts or replaces the step with this id (keeping its original order). */
  saveStep(step: StepWrite): Promise<StepRecord>;
  /** Failed steps of the cluster become `pending` again (for retry); returns their ids. */
  resetFailed(cluster: string): Promise<string[]>;
  /**
   * Takes the cluster's lock for `ttlMs` when it is free, expired, or already this owner's.
   * Returns the lock as it stands afterwards; the caller holds it when `owner` is its own.
   */
  acquireLock(cluster: string, owner: string, holder: string, ttlMs: number): Promise<ClusterLock>;
  /** Extends the lock; false when this owner no longer holds it (it expired and was taken). */
  renewLock(cluster: string, owner: string, ttlMs: number): Promise<boolean>;
  releaseLock(cluster: string, owner: string): Promise<void>;
  lock(cluster: string): Promise<ClusterLock | null>;
}

export interface Inventory {
  readonly clusters: ClusterRepo;
  readonly machines: MachineRepo;
  readonly events: EventRepo;
  readonly tokens: TokenRepo;
  readonly secrets: SecretRepo;
  readonly leases: LeaseRepo;
  close(): Promise<void>;
}

/**
 * Where the DHCP service's machine directory comes from. The address space asks before every
 * lookup, so `current` must answer from memory at once. SQLite's feed polls its synchronous
 * lookup and catches up inside `current` (`lookupFeed`); PostgreSQL's is kept current between
 * datagrams by the database's change notifications and returns the directory as it stands.
 */
export interface MachineFeed {
  /** The directory as of `now` (the datagram's time). The maps are read, never written, by the caller. */
  current(now: number): MachineDirectory;
  /**
   * The directory is known to be behind the store: a lease commit found an address reserved
   * that the directory did not show. Read it whole before the next lookup (or as soon as it can).
   */
  invalidate(): void;
}

export type StoreEngine = 'sqlite' | 'postgres';

/**
 * The whole store as `serve` and the CLI use it, whichever engine is behind it: the embedded
 * SQLite file (the default) or a PostgreSQL database shared by several racksmith instances.
 */
export interface Store extends Inventory {
  readonly engine: StoreEngine;
  readonly orchestration: OrchestrationRepo;
  readonly now: () => Date;
  /**
   * Changes whenever anything stored may have changed (a write through this instance, or one by
   * another process the store hears of), so that a response built from the store can be reused
   * while it is equal.
   */
  readonly revision: () => string;
  /** The DHCP service's machine directory, kept current by the store (never a synchronous read per datagram). */
  machineFeed(): MachineFeed;
  /** Whether the database answers, for /healthz (the embedded file always does). */
  database(): DatabaseHealth;
}

export interface DatabaseHealth {
  readonly engine: StoreEngine;
  readonly state: 'ok' | 'unavailable';
  /** Since when (ISO time), and why it is unavailable (null while ok). */
  readonly since: string | null;
  readonly reason: string | null;
}
