import { stringify } from 'yaml';

/**
 * What subiquity (20.04/22.04) leaves in the installed system for its first boot, as a pure
 * function of the autoinstall data — modelled on subiquity's `SubiquityModel._cloud_init_config`
 * and `_cloud_init_files` (subiquity/models/subiquity.py): its own keys (no growpart/resize, keep
 * the host name, the identity user, ssh_pwauth, the locale), then the autoinstall `user-data`
 * merged in (mappings recursively, lists appended, anything else replaced), handed to cloud-init
 * as the `None` datasource's `userdata_raw` in /etc/cloud/cloud.cfg.d/99-installer.cfg with a
 * fresh random instance-id, beside subiquity's and curtin's other cloud.cfg.d files. So the test
 * runs the role config the way the node receives it, not the text racksmith served.
 */

export interface TargetFile {
  readonly path: string;
  readonly content: string;
  readonly mode: number;
}

/** subiquity's `users-and-groups` resource plus `sudo`, kept where the target has the group. */
export const SUBIQUITY_USER_GROUPS = ['adm', 'cdrom', 'dip', 'lpadmin', 'plugdev', 'sambashare', 'debian-tor', 'libvirtd', 'users', 'sudo'] as const;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** subiquity's merge_cloud_init_config: mappings merge recursively, lists append, the rest is replaced. */
export function mergeCloudInitConfig(target: Obj, source: Obj): void {
  for (const [k, v] of Object.entries(source)) {
    const t = target[k];
    if (isObj(v) && isObj(t)) mergeCloudInitConfig(t, v);
    else if (Array.isArray(v) && Array.isArray(t)) t.push(...(v as unknown[]));
    else target[k] = v;
  }
}

/** `/etc/group` text → group names. */
export function groupNames(etcGroup: string): string[] {
  return etcGroup
    .split('\n')
    .map((l) => l.split(':')[0] ?? '')
    .filter(Boolean);
}

export function subiquityCloudConfig(autoinstall: Obj, targetGroups: readonly string[]): Obj {
  const config: Obj = { growpart: { mode: 'off' }, resize_rootfs: false };
  const identity = isObj(autoinstall['identity']) ? autoinstall['identity'] : null;
  const ssh = isObj(autoinstall['ssh']) ? autoinstall['ssh'] : {};
  const keys = Array.isArray(ssh['authorized-keys']) ? (ssh['authorized-keys'] as unknown[]) : [];
  if (identity?.['hostname'] !== undefined) config['preserve_hostname'] = true;
  if (identity && typeof identity['username'] === 'string') {
    const user: Obj = {
      name: identity['username'],
      gecos: identity['realname'] ?? '',
      passwd: identity['password'],
      shell: '/bin/bash',
      groups: SUBIQUITY_USER_GROUPS.filter((g) => targetGroups.includes(g)).sort().join(','),
      lock_passwd: false,
    };
    if (keys.length > 0) user['ssh_authorized_keys'] = keys;
    config['users'] = [user];
  } else if (keys.length > 0) {
    config['ssh_authorized_keys'] = keys;
  }
  // subiquity turns password logins off by default once keys are given.
  if (ssh['install-server'] === true) config['ssh_pwauth'] = ssh['allow-pw'] ?? keys.length === 0;
  const locale = autoinstall['locale'];
  if (typeof locale === 'string' && locale !== '') config['locale'] = !locale.includes('.') && locale.includes('_') ? `${locale}.UTF-8` : locale;
  if (isObj(autoinstall['user-data'])) mergeCloudInitConfig(config, structuredClone(autoinstall['user-data']));
  return config;
}

/** The files subiquity writes into the target for cloud-init's first boot. */
/**
 * YAML as subiquity's PyYAML writes it and cloud-init's PyYAML reads it: YAML 1.1, where an
 * unquoted `off`/`yes` is a boolean — so such strings must come out quoted.
 */
export function pyYaml(value: unknown): string {
  return stringify(value, { version: '1.1', lineWidth: 0 });
}

export function subiquityFirstBootFiles(autoinstall: Obj, targetGroups: readonly string[], instanceId: string): TargetFile[] {
  const userdata = `#cloud-config\n${pyYaml(subiquityCloudConfig(autoinstall, targetGroups))}`;
  const installerCfg = pyYaml({ datasource_list: ['None'], datasource: { None: { userdata_raw: userdata, metadata: { 'instance-id': instanceId } } } });
  const files: TargetFile[] = [
    { path: '/etc/cloud/cloud.cfg.d/99-installer.cfg', content: installerCfg, mode: 0o600 },
    { path: '/etc/cloud/ds-identify.cfg', content: 'policy: enabled\n', mode: 0o644 },
    // subiquity writes the installed system's netplan itself and keeps cloud-init off networking;
    // curtin configured apt and keeps cloud-init off the sources list.
    { path: '/etc/cloud/cloud.cfg.d/subiquity-disable-cloudinit-networking.cfg', content: 'network: {config: disabled}\n', mode: 0o644 },
    { path: '/etc/cloud/cloud.cfg.d/curtin-preserve-sources.cfg', content: 'apt:\n  preserve_sources_list: true\n', mode: 0o644 },
  ];
  const identity = isObj(autoinstall['identity']) ? autoinstall['identity'] : null;
  if (typeof identity?.['hostname'] === 'string') {
    const h = identity['hostname'].trim();
    files.push(
      { path: '/etc/hostname', content: `${h}\n`, mode: 0o644 },
      {
        path: '/etc/hosts',
        content: `127.0.0.1 localhost\n127.0.1.1 ${h}\n\n# The following lines are desirable for IPv6 capable hosts\n::1     ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n`,
        mode: 0o644,
      },
    );
  }
  return files;
}
