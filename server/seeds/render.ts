import type { Renderer } from '../render/templates.js';
import type { InstallerKind } from '../boot/releases.js';
import { CHECK_SCRIPT, KEEPALIVED_PATHS, fillInterfaceLines, renderKeepalivedConfig, type Vrrp } from '../orchestrator/lb-pair.js';

/**
 * The files under `/seed/<token>/` and the template behind each. 18.04 (debian-installer) gets
 * the preseed, and its `user-data` is the role's cloud-config itself (the preseed's late_command
 * copies it into the installed system's NoCloud seed). 20.04+ (subiquity) get an autoinstall
 * `user-data` that carries the role's cloud-config under `autoinstall.user-data`.
 */
export const SEED_FILES = ['preseed.cfg', 'user-data', 'meta-data', 'vendor-data', 'network-config'] as const;
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
    case 'user-data': {
      const roleConfig = renderRoleConfig(r, ctx);
      return kind === 'debian-installer' ? roleConfig : r.render('user-data.yaml.njk', { ...ctx, roleConfig });
    }
    case 'meta-data':
      return r.render('meta-data.yaml.njk', ctx);
    case 'vendor-data':
      return r.render('vendor-data.yaml.njk', ctx);
    case 'network-config':
      return r.render('network-config.yaml.njk', ctx);
  }
}
