import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../server/lib/paths.js';
import type { PxeBed, Vm } from './pxe.js';
import type { RacksmithProcess } from './racksmith.js';

/**
 * What the QEMU suites of racksmith's installs share: the admin's API calls from inside the server
 * namespace, and the evidence a failed run leaves in `test-artifacts/<suite>/` (every serial
 * console, racksmith's log, and whatever else the suite names).
 */
export interface MachineApi {
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  events(mac: string): Promise<any[]>;
}

export function machineApi(bed: () => PxeBed, base: string, token: () => string): MachineApi {
  const call: MachineApi['call'] = (method, path, body) => bed().api(base, token(), method, `/api/v1${path}`, body);
  return {
    call,
    async events(mac) {
      const r = await call('GET', `/machines/${mac}/events?limit=10000`);
      // 404 until the machine exists.
      return Array.isArray(r.body) ? r.body : [];
    },
  };
}

/**
 * A serial console, short enough for a failure message: the lines that match `pick` (at most 15,
 * the last ones) and the console's last 10 lines, with terminal escapes taken out.
 */
export function consoleExcerpt(console: string, pick: RegExp): string {
  // eslint-disable-next-line no-control-regex -- a serial console is full of them
  const lines = console.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split(/\r?\n/).map((l) => l.slice(0, 200));
  const picked = lines.filter((l) => pick.test(l)).slice(-15);
  return [`  ${picked.length} matching line(s):`, ...picked.map((l) => `    ${l}`), '  the end of the console:', ...lines.slice(-8).map((l) => `    ${l}`)].join('\n');
}

export function keepEvidence(suite: string, vms: readonly Vm[], rs: RacksmithProcess | null, extra: Record<string, string> = {}): void {
  const keep = join(PACKAGE_ROOT, 'test-artifacts', suite);
  mkdirSync(keep, { recursive: true });
  for (const vm of vms) if (existsSync(vm.opts.serialLog)) copyFileSync(vm.opts.serialLog, join(keep, `${vm.opts.name}.log`));
  if (rs) writeFileSync(join(keep, 'racksmith.log'), rs.output());
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(keep, name), text);
  process.stdout.write(`\n  evidence kept in ${keep}\n`);
}
