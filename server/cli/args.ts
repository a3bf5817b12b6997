import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SETTINGS, kebab, type SettingName } from '../config/settings.js';

/** A command-line mistake: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Every setting as a `--kebab-name VALUE` flag, plus `--config FILE`. */
export const SETTING_FLAGS: Options = {
  config: { type: 'string' },
  ...Object.fromEntries((Object.keys(SETTINGS) as SettingName[]).map((n) => [kebab(n), { type: 'string' as const }])),
};

export function parse(args: readonly string[], options: Options, positionals = 0): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const out = parseArgs({ args: [...args], options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: positionals > 0, strict: true });
    if (out.positionals.length > positionals) throw new UsageError(`unexpected argument "${out.positionals[positionals]}"`);
    return { values: out.values as Record<string, string | boolean | undefined>, positionals: out.positionals };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError((err as Error).message.replace(/\. To specify a positional.*$/, ''));
  }
}

/** Flag values mapped back to setting names (`--http-port` → httpPort). */
export function settingFlags(values: Record<string, string | boolean | undefined>): Partial<Record<SettingName, string>> {
  const out: Partial<Record<SettingName, string>> = {};
  for (const n of Object.keys(SETTINGS) as SettingName[]) {
    const v = values[kebab(n)];
    if (typeof v === 'string') out[n] = v;
  }
  return out;
}
