/** The settings as the Markdown table in README.md (`racksmith settings --markdown`). */
import { SETTINGS, kebab, type SettingName } from './settings.js';

export function settingsMarkdown(): string {
  const rows = (Object.keys(SETTINGS) as SettingName[]).map((n) => {
    const s = SETTINGS[n];
    const def = s.default === undefined ? '—' : `\`${String(s.default)}\``;
    return `| \`--${kebab(n)}\` | \`${s.env}\` | ${def} | ${s.help} |`;
  });
  return ['| flag / YAML key | environment | default | meaning |', '|---|---|---|---|', ...rows].join('\n') + '\n';
}
