import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository (or installed package) root: the nearest folder above this module holding
 * package.json. Code runs from `dist/`, while templates and fixtures stay in the source tree.
 */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('cannot find the racksmith package root above ' + fileURLToPath(import.meta.url));
}

export const PACKAGE_ROOT = findRoot();
export const BOOT_TEMPLATES_DIR = join(PACKAGE_ROOT, 'boot-templates');
export const AUTOINSTALL_DIR = join(PACKAGE_ROOT, 'autoinstall');
export const CLI_PATH = join(PACKAGE_ROOT, 'dist', 'server', 'cli.js');
