/**
 * `npm run bench`: every `bench:*` script in package.json, one after another (benchmarks want
 * the machine to themselves), with a summary of which finished.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../server/lib/paths.js';

const scripts = Object.keys((JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts)
  .filter((s) => s.startsWith('bench:'))
  .filter((s) => process.argv.length <= 2 || process.argv.slice(2).some((f) => s.includes(f)));
const results: [string, number | null][] = [];
for (const s of scripts) {
  process.stdout.write(`\n════ ${s}\n`);
  const r = spawnSync('npm', ['run', '--silent', s], { cwd: PACKAGE_ROOT, stdio: 'inherit' });
  results.push([s, r.status]);
}
process.stdout.write(`\n${results.map(([s, code]) => `  ${code === 0 ? 'ok    ' : 'FAILED'} ${s}`).join('\n')}\n`);
if (results.some(([, code]) => code !== 0)) process.exitCode = 1;
