import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Renderer } from '../render/templates.js';
import type { InstallerKind } from '../boot/releases.js';
import { PACKAGE_ROOT } from '../lib/paths.js';
import { CHECK_SCRIPT, KEEPALIVED_PATHS, fillInterfaceLines, renderKeepalivedConfig, type Vrrp } from '../orchestrator/lb-pair.js';

/** The install disk rule (agent/disk-rule.sh), which d-i's partman/early_command runs as well. */
let diskRule: string | null = null;
function diskRuleScript(): string {
  diskRule ??= readFileSync(join(PACKAGE_ROOT, 'agent', 'disk-rule.sh'), 'utf8');
  return diskRule;
}

/**
 * The files under `/seed/<token>/` and the template behind each.
 *
 * - debian-installer (Ubuntu 18.04, Debian 12) gets the preseed, and its `user-data` is the
 *   role's cloud-config itself (the preseed's late_command copies it into the installed system's
 *   NoCloud seed); its early commands fetch `di-reporter.sh` (d-i's progress to racksmith) and
 *   `install-disk.sh` (the install disk rule, for partman).
 * - subiquity (20.04+) gets an autoinstall `user-data` that carries the role's cloud-config under
 *   `autoinstall.user-data`.
 * - the deploy agent (image deployment) gets `deploy.env` (what to write where) and `cloud.cfg`
 *   (the installed system's cloud-init settings); the installed system's cloud-init then reads
 *   `user-data` — the role's cloud-config — and `meta-data` from here.
 */
export const SEED_FILES = ['preseed.cfg', 'user-data', 'meta-data', 'vendor-data', 'network-config', 'deploy.env', 'cloud.cfg', 'install-disk.sh', 'di-reporter.sh'] as const;
export type SeedFile = (typeof SEED_FILES)[number];

export function isSeedFile(s: string): s is SeedFile {
  return (SEED_FILES as readonly string[]).includes(s);
}

export const CONTENT_TYPE: Record<SeedFile, string> = {
  'preseed.cfg': 'text/plain; charset=utf-8',
  'user-data': 'text/cloud-config; charset=utf-8',
  'meta-data': 'text/yaml; charset=utf-8',
  'vendor-data': 'text/cloud-config; charset=utf-8',
  'network-config': 'text/yaml; charset=utf-8',
  'deploy.env': 'text/plain; charset=utf-8',
  'cloud.cfg': 'text/yaml; charset=utf-8',
  'install-disk.sh': 'text/x-shellscript; charset=utf-8',
  'di-reporter.sh': 'text/x-shellscript; charset=utf-8',
};

/** The role's cloud-config (one definition for every release and role). */
export function renderRoleConfig(r: Renderer, ctx: Record<string, unknown>): string {
  const haproxyConfig = ctx['role'] === 'loadbalancer' ? r.render('roles/haproxy.cfg.njk', ctx['haproxy'] as Record<string, unknown>) : '';
  const vrrp = (ctx['vrrp'] ?? null) as Vrrp | null;
  const keepalived = vrrp
    ? {
        config: renderKeepalivedConfig(r, vrrp, { cluster: String(ctx['cluster']), hostname: String(ctx['hostname']) }),
        check: CHECK_SCRIPT,
        fill: fillInterfaceLines(KEEPALIVED_PATHS.conf, vrrp.self),
      }
    : null;
  return r.render('roles/cloud-config.yaml.njk', { ...ctx, haproxyConfig, keepalived });
}

/** Renders one seed file, or null when the file does not exist for this installer (→ 404). */
export function renderSeedFile(r: Renderer, file: SeedFile, kind: InstallerKind, ctx: Record<string, unknown>): string | null {
  switch (file) {
    case 'preseed.cfg':
      return kind === 'debian-installer' ? r.render('preseed.cfg.njk', ctx) : null;
    case 'install-disk.sh':
      return kind === 'debian-installer' ? r.render('di/install-disk.sh.njk', { ...ctx, diskRuleScript: diskRuleScript() }) : null;
    case 'di-reporter.sh':
      return kind === 'debian-installer' ? r.render('di/reporter.sh.njk', ctx) : null;
    case 'user-data': {
      const roleConfig = renderRoleConfig(r, ctx);
      return kind === 'subiquity' ? r.render('user-data.yaml.njk', { ...ctx, roleConfig }) : roleConfig;
    }
    case 'meta-data':
      return r.render('meta-data.yaml.njk', ctx);
    case 'vendor-data':
      return r.render('vendor-data.yaml.njk', ctx);
    case 'network-config':
      return r.render('network-config.yaml.njk', ctx);
    case 'deploy.env':
      return kind === 'deploy-agent' ? r.render('agent/deploy.env.njk', ctx) : null;
    case 'cloud.cfg':
      return kind === 'deploy-agent' ? r.render('agent/cloud.cfg.njk', { ...ctx, networkConfig: r.render('network-config.yaml.njk', ctx) }) : null;
  }
}
