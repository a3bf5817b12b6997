import type { InstalledDisk } from '../inventory/model.js';

/**
 * subiquity/curtin reporting webhook events (curtin/reporter/events.py): JSON objects such as
 * `{"event_type": "finish", "name": "cmd-install/stage-partitioning", "result": "FAIL",
 * "description": "…", "origin": "curtin", "timestamp": 1.7e9, "level": "INFO"}`. Parsed once;
 * a `finish` with result `FAIL` marks the install failed.
 */
export interface InstallerEvent {
  readonly eventType: string;
  readonly name: string;
  readonly result: string | null;
  readonly description: string;
  readonly origin: string | null;
  readonly failed: boolean;
  /** The install disk, as racksmith's deploy agent and d-i's partman/early_command report it. */
  readonly disk: ReportedDisk | null;
  /** The machine's disks and NICs (the deploy agent's inventory), kept as the event's data. */
  readonly inventory: Record<string, unknown> | null;
}

export type ReportedDisk = Omit<InstalledDisk, 'reportedAt'>;

/**
 * debian-installer's steps (main-menu items) as the installer names them on screen, for events
 * that carry only the item (racksmith's d-i reporter).
 */
export const DI_STEPS: Readonly<Record<string, string>> = {
  localechooser: 'Choose language',
  'console-setup-udeb': 'Configure the keyboard',
  'ethdetect': 'Detect network hardware',
  netcfg: 'Configure the network',
  'choose-mirror': 'Choose a mirror of the Debian archive',
  'download-installer': 'Download installer components',
  'user-setup-udeb': 'Set up users and passwords',
  'clock-setup': 'Configure the clock',
  'disk-detect': 'Detect disks',
  'partman-base': 'Partition disks',
  'bootstrap-base': 'Install the base system',
  'apt-setup-udeb': 'Configure the package manager',
  'pkgsel': 'Select and install software',
  'grub-installer': 'Install the GRUB boot loader',
  'finish-install': 'Finish the installation',
};

export class InstallerEventError extends Error {
  readonly code = 'ERR_INSTALLER_EVENT';
  readonly field: string | undefined;
  constructor(message: string, field?: string) {
    super(message);
    this.name = 'InstallerEventError';
    this.field = field;
  }
}

function str(b: Record<string, unknown>, key: string, max: number): string | null {
  const v = b[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' && typeof v !== 'number') throw new InstallerEventError(`${key} must be a string`, key);
  return String(v).replace(/[\r\n\0]+/g, ' ').slice(0, max);
}

function diskOf(v: unknown): ReportedDisk | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new InstallerEventError('disk must be an object', 'disk');
  const d = v as Record<string, unknown>;
  const name = str(d, 'name', 64);
  if (!name || !/^[a-z][a-z0-9]{1,31}$/.test(name)) throw new InstallerEventError('disk.name must be a kernel disk name such as nvme0n1', 'disk.name');
  const size = d['sizeBytes'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new InstallerEventError('disk.sizeBytes must be a whole number of bytes', 'disk.sizeBytes');
  return {
    name,
    path: `/dev/${name}`,
    kind: (str(d, 'kind', 16) ?? 'other').replace(/[^a-z]/g, '') || 'other',
    sizeBytes: size,
    serial: str(d, 'serial', 128) || null,
    model: str(d, 'model', 128) || null,
    chosenBy: str(d, 'chosenBy', 300) || null,
  };
}

/** The inventory's lists, at most 64 entries each: it is stored with the event. */
function boundedInventory(inv: Record<string, unknown>): Record<string, unknown> {
  const list = (v: unknown): unknown[] => (Array.isArray(v) ? v.slice(0, 64).filter((x) => x !== null && typeof x === 'object' && !Array.isArray(x)) : []);
  return { disks: list(inv['disks']), nics: list(inv['nics']) };
}

export function parseInstallerEvent(body: unknown): InstallerEvent {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new InstallerEventError('expected a JSON object (a curtin webhook event)');
  const b = body as Record<string, unknown>;
  const eventType = str(b, 'event_type', 32);
  if (!eventType) throw new InstallerEventError('event_type is required', 'event_type');
  const result = str(b, 'result', 32);
  const name = str(b, 'name', 200) ?? '';
  const inventory = b['inventory'];
  if (inventory !== undefined && (inventory === null || typeof inventory !== 'object' || Array.isArray(inventory))) throw new InstallerEventError('inventory must be an object', 'inventory');
  const item = name.startsWith('d-i/') ? DI_STEPS[name.slice(4)] : undefined;
  return {
    eventType,
    name,
    result,
    description: str(b, 'description', 500) || item || '',
    origin: str(b, 'origin', 64),
    failed: eventType === 'finish' && result !== null && result.toUpperCase() === 'FAIL',
    disk: diskOf(b['disk']),
    inventory: inventory === undefined ? null : boundedInventory(inventory as Record<string, unknown>),
  };
}
