import type { InstallDiskRule, OsId } from '../inventory/os.js';

/**
 * The install disk, one rule in three expressions (the rule itself: agent/disk-rule.sh):
 *
 * - the deploy agent and debian-installer run agent/disk-rule.sh on the machine, against its
 *   sysfs, with the parameters below (`diskRuleParams`);
 * - subiquity gets a storage `match` spec (`subiquityMatch`), the closest its matcher can say:
 *   `size: smallest|largest` for the rule, `path`/`serial` for an explicit disk. Subiquity already
 *   skips the install medium and disks too small for the system; it cannot express "not USB, at
 *   least N GB" — docs/install-methods.md says so.
 *
 * A machine's `installDisk` is checked here once, on the way in: the forms the rule reads, and
 * only characters that are safe in every place the value goes (a shell word, a preseed line, a
 * YAML scalar, deploy.env).
 */
export const INSTALL_DISK_PATTERN = /^(\/dev\/[a-z][a-z0-9]{1,31}|\/dev\/disk\/by-id\/[A-Za-z0-9][A-Za-z0-9._:+-]{0,200}|serial:[A-Za-z0-9][A-Za-z0-9._:+-]{0,127})$/;

export const INSTALL_DISK_HELP = 'expected /dev/NAME (a whole disk such as /dev/nvme0n1), /dev/disk/by-id/NAME or serial:SERIAL';

export function isInstallDisk(s: string): boolean {
  return INSTALL_DISK_PATTERN.test(s) && !/^\/dev\/disk$/.test(s);
}

export interface DiskRuleParams {
  readonly rule: InstallDiskRule;
  /** The smallest disk the rule may pick, in bytes. */
  readonly minBytes: number;
  /** The machine's explicit choice, or empty. */
  readonly installDisk: string;
}

export function diskRuleParams(rule: InstallDiskRule, minGb: number, installDisk: string | null): DiskRuleParams {
  return { rule, minBytes: minGb * 1_000_000_000, installDisk: installDisk ?? '' };
}

export class InstallDiskError extends Error {
  readonly code = 'ERR_INSTALL_DISK';
  constructor(message: string) {
    super(message);
    this.name = 'InstallDiskError';
  }
}

/** udev's by-id prefixes whose rest is the disk's ID_SERIAL (model_serial). */
const SERIAL_BUSES = ['ata', 'nvme', 'scsi', 'virtio', 'usb', 'mmc'];

export type SubiquityMatch = Readonly<Record<string, string | boolean>>;

/**
 * The subiquity storage `match` for a rule or an explicit disk. `first` has no match key of its
 * own: from 24.04 (subiquity 24.08) an ordered list of specs takes the first disk of the agent's
 * order that exists; before it, subiquity's "any disk" is the closest.
 */
export function subiquityMatch(os: OsId, rule: InstallDiskRule, installDisk: string | null): SubiquityMatch | readonly SubiquityMatch[] {
  if (installDisk) {
    if (installDisk.startsWith('serial:')) return { serial: `*${installDisk.slice('serial:'.length)}` };
    if (installDisk.startsWith('/dev/disk/by-id/')) {
      const id = installDisk.slice('/dev/disk/by-id/'.length);
      const dash = id.indexOf('-');
      const bus = dash > 0 ? id.slice(0, dash) : '';
      if (SERIAL_BUSES.includes(bus) && !id.startsWith('nvme-eui.')) return { serial: id.slice(dash + 1) };
      throw new InstallDiskError(`installDisk ${installDisk}: subiquity matches disks by serial, not by ${bus || id} names; give serial:<serial> or a /dev path`);
    }
    return { path: installDisk };
  }
  switch (rule) {
    case 'smallest':
    case 'largest':
      return { size: rule };
    case 'first':
      return os === 'ubuntu-24.04' ? [{ path: '/dev/nvme0n1' }, { path: '/dev/sda' }, { path: '/dev/vda' }, { path: '/dev/mmcblk0' }] : {};
  }
}
