import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { SETTINGS, kebab, type Config, type SettingName, type SettingSpec } from './settings.js';

/** A setting that failed validation: one line naming the setting, the value and what is allowed. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ConfigSources {
  /** YAML file path (from --config or RACKSMITH_CONFIG). */
  readonly file?: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  /** Flag values by setting name (already mapped from kebab case). */
  readonly flags: Partial<Record<SettingName, string>>;
}

const NAMES = Object.keys(SETTINGS) as SettingName[];
const BY_KEBAB = new Map(NAMES.map((n) => [kebab(n), n]));

export function settingByFlag(flag: string): SettingName | undefined {
  return BY_KEBAB.get(flag);
}

export function loadConfig(sources: ConfigSources): Config {
  const raw: Partial<Record<SettingName, { value: unknown; from: string }>> = {};
  const file = sources.file ?? sources.env['RACKSMITH_CONFIG'];
  if (file) {
    for (const [key, value] of Object.entries(readYaml(file))) {
      const name = BY_KEBAB.get(key) ?? (NAMES.includes(key as SettingName) ? (key as SettingName) : undefined);
      if (!name) throw new ConfigError(`config file ${file}: unknown setting "${key}" (allowed: ${[...BY_KEBAB.keys()].join(', ')})`);
      raw[name] = { value, from: `${key} in ${file}` };
    }
  }
  for (const name of NAMES) {
    const spec: SettingSpec = SETTINGS[name];
    const env = sources.env[spec.env];
    if (env !== undefined && env !== '') raw[name] = { value: env, from: spec.env };
    const flag = sources.flags[name];
    if (flag !== undefined) raw[name] = { value: flag, from: `--${kebab(name)}` };
  }
  const out: Record<string, unknown> = {};
  for (const name of NAMES) {
    const spec: SettingSpec = SETTINGS[name];
    const given = raw[name];
    const result = spec.schema.safeParse(given ? given.value : spec.default);
    if (!result.success) {
      const shown = spec.secret ? '(hidden)' : JSON.stringify(given?.value);
      const why = result.error.issues[0]?.message ?? 'invalid';
      throw new ConfigError(`invalid setting ${kebab(name)} (${given?.from ?? 'default'}): ${shown} — ${why}`);
    }
    out[name] = result.data;
  }
  const config = out as Config;
  if (config.dhcpMode === 'authoritative' && !config.dhcpRange) {
    throw new ConfigError('invalid setting dhcp-range (RACKSMITH_DHCP_RANGE): missing — authoritative DHCP mode needs a pool such as 10.77.0.100-10.77.0.199');
  }
  config.advertiseAddress ??= firstNonLoopbackIPv4();
  return config;
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${file}: not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  if (doc == null) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${file}: expected a mapping of settings`);
  return doc as Record<string, unknown>;
}

export function firstNonLoopbackIPv4(): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}
