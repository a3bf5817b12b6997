/**
 * `npm test`'s first step: as root on Debian, install the Debian packages the suites drive that
 * are missing (the list `.ci/run` and the lab use, `.ci/packages`), so that a newcomer's first
 * `npm test` runs everything. Elsewhere it installs nothing: the suites that need a missing
 * package skip, and the runner ends with a table of them and the command that would run them.
 */
import { canInstallPackages, ensurePackages, missingPackages, readPackageList } from '../lab/packages.js';

const all = readPackageList();
if (!canInstallPackages()) {
  process.stdout.write('npm test: not root on Debian, so no Debian packages are installed; suites that need one skip (see the table at the end)\n');
} else {
  const missing = await missingPackages(all);
  if (missing.length === 0) {
    process.stdout.write(`npm test: the ${all.length} Debian packages the suites drive are installed\n`);
  } else {
    await ensurePackages((line) => process.stdout.write(`npm test: ${line}\n`), all);
  }
}
