import { bootScriptRecorder } from '../server/http/boot-scripts.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createArtifactStore } from '../server/artifacts/store.js';
import { DEFAULT_INSTALLERS, installerTables } from '../server/boot/releases.js';
import { bootFiles } from '../server/boot/tftp-files.js';
import type { Mac } from '../server/lib/mac.js';
import { FileError, type FileSource } from '../server/lib/files.js';
import { silentLogger } from '../server/lib/log.js';
import { BOOT_TEMPLATES_DIR } from '../server/lib/paths.js';
import { createRenderer } from '../server/render/templates.js';
import { tempStore } from './lib/inventory.js';
import { BOOT_SETTINGS } from './lib/seed-fixtures.js';

/**
 * What the signed chain reads over TFTP, from the real inventory and artifacts store: the signed
 * binaries by name, GRUB's configs through the same path as /boot.ipxe (sighting, transition,
 * event), the arm64 artifacts apart from the amd64 ones, and nothing else.
 */
const test = suite('boot: the signed chain\'s files over TFTP');
const inv = await tempStore();
const MAC = '52:54:00:19:00:11' as Mac;
let files: FileSource;

async function text(name: string, from = '10.77.0.11'): Promise<string> {
  const f = await files.open(name, { address: from });
  return (await f.read(0, f.size)).toString('utf8');
}
async function refusal(name: string): Promise<string> {
  try {
    await files.open(name, { address: '10.77.0.11' });
  } catch (err) {
    assert.instance(err, FileError);
    return (err as FileError).code;
  }
  return 'opened';
}

test.before(async () => {
  const art = join(inv.dir, 'artifacts');
  mkdirSync(join(art, '22.04', 'arm64'), { recursive: true });
  writeFileSync(join(art, '22.04', 'vmlinuz'), 'amd64 kernel');
  writeFileSync(join(art, '22.04', 'arm64', 'vmlinuz'), 'arm64 kernel');
  const signed = join(inv.dir, 'shimx64.efi');
  writeFileSync(signed, 'signed shim');
  await inv.clusters.create({ name: 'c', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  await inv.machines.create({ mac: MAC, hostname: 'sb1', role: 'worker', cluster: 'c', ip: '10.77.0.11', bootLoader: 'shim-grub' });
  files = bootFiles({
    serve: { machines: inv.machines, clusters: inv.clusters, events: inv.events, templates: createRenderer(BOOT_TEMPLATES_DIR), installers: installerTables(DEFAULT_INSTALLERS), boot: BOOT_SETTINGS, now: () => new Date(), recordBootScript: bootScriptRecorder(inv.machines) },
    artifacts: createArtifactStore({ artifactsDir: art, cacheDir: join(inv.dir, 'cache'), installers: DEFAULT_INSTALLERS, fetchIdleTimeoutMs: 1000, log: silentLogger() }),
    chains: { x86_64: new Map([['shimx64.efi', signed]]) },
    baseUrl: BOOT_SETTINGS.baseUrl,
  });
});

test.after(() => inv.destroy());

test('grub/grub.cfg (with or without a leading slash) asks for the per-MAC config', async () => {
  assert.match(await text('grub/grub.cfg'), /configfile "\$\{prefix\}\/grub\.cfg-01-\$\{rs_m1\}/);
  assert.match(await text('/grub/grub.cfg'), /^regexp /m);
});

test('the machine\'s config: install, arm64 files for an arm64 GRUB; recorded like /boot.ipxe', async () => {
  const cfg = await text('grub/grub.cfg-01-52-54-00-19-00-11?arch=arm64&platform=efi&lockdown=y');
  assert.match(cfg, /^linux '\/artifacts\/22\.04\/arm64\/vmlinuz' /m);
  const m = await inv.machines.get(MAC);
  assert.is(m?.state, 'provisioning');
  assert.is(m?.secureBootSeen, 'enforced');
  assert.is(m?.arch, 'arm64');
  const ev = await inv.events.list({ mac: MAC });
  const grub = ev.find((e) => e.type === 'boot.grub');
  assert.is(grub?.source, 'tftp 10.77.0.11');
  assert.is(grub?.data?.['script'], 'install');
});

test('artifacts by (release, arch); signed binaries by name; nothing else', async () => {
  assert.is(await text('artifacts/22.04/arm64/vmlinuz'), 'arm64 kernel');
  assert.is(await text('artifacts/22.04/vmlinuz'), 'amd64 kernel');
  assert.is(await text('shim-grub/x86_64/shimx64.efi'), 'signed shim');
  for (const name of ['shim-grub/arm64/shimaa64.efi', 'shim-grub/x86_64/../x86_64/shimx64.efi', 'artifacts/22.04/../../etc/passwd', 'artifacts/17.10/vmlinuz', 'artifacts/22.04/riscv64/vmlinuz', 'grub/grub.cfg-01-zz', 'ipxe.efi']) {
    assert.is(await refusal(name), 'ERR_FILE_NOT_FOUND', name);
  }
});

test.run();
