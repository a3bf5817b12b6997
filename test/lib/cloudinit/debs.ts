import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One file a package installs (absolute path inside the installed system). */
export interface DebFile {
  readonly path: string;
  readonly content: string;
  readonly mode?: number;
}

/** A binary package described as data; `buildDeb` turns it into a real .deb with dpkg-deb. */
export interface DebSpec {
  readonly name: string;
  readonly version: string;
  readonly architecture: 'amd64' | 'all';
  readonly description: string;
  readonly depends?: readonly string[];
  readonly provides?: readonly string[];
  readonly conflicts?: readonly string[];
  readonly replaces?: readonly string[];
  readonly files: readonly DebFile[];
  /** Paths under /etc that dpkg treats as configuration files (kept on upgrade, as in the real package). */
  readonly conffiles?: readonly string[];
  /** Maintainer scripts, run by dpkg inside the installed system. */
  readonly postinst?: string;
  readonly prerm?: string;
}

export function controlFile(spec: DebSpec): string {
  const lines = [
    `Package: ${spec.name}`,
    `Version: ${spec.version}`,
    `Architecture: ${spec.architecture}`,
    'Maintainer: racksmith tests <tests@racksmith.invalid>',
    'Section: admin',
    'Priority: optional',
  ];
  for (const [field, list] of [['Depends', spec.depends], ['Provides', spec.provides], ['Conflicts', spec.conflicts], ['Replaces', spec.replaces]] as const) {
    if (list && list.length > 0) lines.push(`${field}: ${list.join(', ')}`);
  }
  lines.push(`Description: ${spec.description}`, ' Stand-in package built by racksmith\'s cloud-init test; it installs the', ' files the real package installs where the test looks at them, and small', ' scripts in place of the programs.');
  return lines.join('\n') + '\n';
}

/** The .deb file name apt-ftparchive and pools use: name_version_arch.deb, epoch colon escaped. */
export function debFileName(spec: DebSpec): string {
  return `${spec.name}_${spec.version.replace(/:/g, '%3a')}_${spec.architecture}.deb`;
}

/** Builds the package into `outDir` and returns the .deb's path. */
export async function buildDeb(spec: DebSpec, outDir: string): Promise<string> {
  const tree = mkdtempSync(join(outDir, `.${spec.name}-`));
  try {
    mkdirSync(join(tree, 'DEBIAN'));
    writeFileSync(join(tree, 'DEBIAN', 'control'), controlFile(spec));
    if (spec.conffiles && spec.conffiles.length > 0) writeFileSync(join(tree, 'DEBIAN', 'conffiles'), spec.conffiles.join('\n') + '\n');
    for (const [name, body] of [['postinst', spec.postinst], ['prerm', spec.prerm]] as const) {
      if (body === undefined) continue;
      writeFileSync(join(tree, 'DEBIAN', name), body);
      chmodSync(join(tree, 'DEBIAN', name), 0o755);
    }
    for (const f of spec.files) {
      if (!f.path.startsWith('/') || f.path.includes('..')) throw new Error(`${spec.name}: bad file path ${f.path}`);
      const p = join(tree, f.path);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, f.content);
      chmodSync(p, f.mode ?? 0o644);
    }
    const out = join(outDir, debFileName(spec));
    await run('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', tree, out], { timeout: 60_000 });
    return out;
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}
