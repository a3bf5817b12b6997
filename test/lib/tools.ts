import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * Tests that need a real peer (dhclient, QEMU, ipmi_sim…) or root ask here first. Outside CI a
 * missing tool skips the suite with a note; under CI=true `.ci/run` has installed everything
 * and runs as root, so a missing tool is a failure, never a skip.
 */
export const IN_CI = process.env['CI'] === 'true' || process.env['CI'] === '1';

export function which(tool: string): string | null {
  if (tool.includes('/')) return existsSync(tool) ? tool : null;
  for (const dir of (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = `${dir}/${tool}`;
    if (dir && existsSync(p)) return p;
  }
  return null;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export function canUseNetns(): boolean {
  if (!isRoot() || !which('ip')) return false;
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Returns null when everything is present, else the reason to skip. Throws under CI.
 * Use: `const missing = requirements(['dhclient'], { netns: true }); if (missing) { skip… }`.
 */
export function requirements(tools: readonly string[], opts: { netns?: boolean; root?: boolean } = {}): string | null {
  const lacking = tools.filter((t) => which(t) === null);
  const reasons: string[] = [];
  if (lacking.length) reasons.push(`missing ${lacking.join(', ')}`);
  if ((opts.netns || opts.root) && !isRoot()) reasons.push('needs root');
  else if (opts.netns && !canUseNetns()) reasons.push('cannot create network namespaces');
  if (reasons.length === 0) return null;
  const why = reasons.join('; ');
  if (IN_CI) throw new Error(`under CI nothing may skip: ${why} (.ci/run should have installed it)`);
  return why;
}

/** Prints why a suite is skipped, so a local run says so instead of passing silently. */
export function skipNote(suite: string, why: string): void {
  process.stdout.write(`\n  ⚠ skipped ${suite}: ${why}\n`);
}
