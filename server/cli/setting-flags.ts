import { SETTINGS, kebab, type SettingName } from '../config/settings.js';
import type { Options } from './args.js';

/**
 * The settings on the command line: flags, `--help` of serve and `racksmith settings`. Apart from
 * the other commands' parsing and help, because the settings table loads its schemas (zod): the
 * client commands start without them.
 */

/** Every setting as a `--kebab-name VALUE` flag, plus `--config FILE`. */
export const SETTING_FLAGS: Options = {
  config: { type: 'string' },
  ...Object.fromEntries((Object.keys(SETTINGS) as SettingName[]).map((n) => [kebab(n), { type: 'string' as const }])),
};

/** Flag values mapped back to setting names (`--http-port` → httpPort). */
export function settingFlags(values: Record<string, string | boolean | undefined>): Partial<Record<SettingName, string>> {
  const out: Partial<Record<SettingName, string>> = {};
  for (const n of Object.keys(SETTINGS) as SettingName[]) {
    const v = values[kebab(n)];
    if (typeof v === 'string') out[n] = v;
  }
  return out;
}

export function settingsHelp(): string {
  const rows = (Object.keys(SETTINGS) as SettingName[]).map((n) => {
    const s = SETTINGS[n];
    const def = s.default === undefined ? '' : ` (default: ${String(s.default)})`;
    return `  --${kebab(n).padEnd(22)} ${s.env.padEnd(30)} ${s.help}${def}`;
  });
  return `Settings (a YAML file via --config FILE or RACKSMITH_CONFIG, then the environment, then flags; later wins):
  --config FILE            RACKSMITH_CONFIG               YAML file of settings (keys as the flag names)
${rows.join('\n')}
`;
}

export const SERVE_HELP = () => `Usage: racksmith serve [settings]

Starts every enabled service in one process. A service that cannot start (port in use, no
permission for port 67/69, no such interface) stops serve with one line naming the service, the
setting and the cause; turn it off (--dhcp-mode off, --tftp-port 0) to run without it.
SIGTERM or Ctrl-C stops accepting, finishes in-flight requests and closes the store.

${settingsHelp()}`;
