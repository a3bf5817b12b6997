import type { ArtifactStore } from '../artifacts/store.js';
import { AppError } from '../lib/errors.js';
import { FileError, memoryFile, openLocalFile, type FileClient, type FileSource, type OpenedFile } from '../lib/files.js';
import { SHIM_GRUB_PREFIX, type LoaderArch, type SignedChain } from './loaders.js';
import { BootQueryError, grubConfigQuery, parseBootQuery } from './query.js';
import { serveBootScript, type BootServeDeps } from './serve.js';

/**
 * What the signed shim → GRUB chain reads over TFTP, in front of the TFTP root:
 *
 *   shim-grub/<arch>/shim*.efi, grub*.efi   the distribution's signed binaries, from disk
 *   grub/grub.cfg                           GRUB's first config: asks for the machine's own
 *   grub/grub.cfg-01-<mac>?arch=…           the machine's config for its state (serveBootScript,
 *                                           the same path as /boot.ipxe, with the TFTP client's address)
 *   artifacts/<release>[/<arch>]/<file>     installer kernel and initrd (the artifacts cache)
 *
 * Debian's signed GRUB has only TFTP (no HTTP client is built into the signed image), so the
 * kernel and initrd come this way too, as MAAS serves them to GRUB.
 */
export interface BootFilesDeps {
  readonly serve: BootServeDeps;
  readonly artifacts: ArtifactStore;
  readonly chains: Partial<Record<LoaderArch, SignedChain>>;
  /** `http://<advertise>:<port>`: seeds and the ISO are still fetched over HTTP by the installer. */
  readonly baseUrl: string;
}

const notFound = (name: string, why: string): FileError => new FileError('ERR_FILE_NOT_FOUND', 'ERR_JAIL_NOT_FOUND', `${name}: ${why}`);

export function bootFiles(d: BootFilesDeps): FileSource {
  async function grubConfig(name: string, client: FileClient | undefined): Promise<OpenedFile> {
    let query;
    try {
      query = parseBootQuery(name === 'grub/grub.cfg' ? {} : (grubConfigQuery(name) ?? {}));
    } catch (err) {
      if (err instanceof BootQueryError) throw notFound(name, err.message);
      throw err;
    }
    const remote = client?.address ?? null;
    try {
      const served = await serveBootScript(d.serve, { query, loader: 'grub', baseUrl: d.baseUrl, source: `tftp ${remote ?? '?'}`, remote });
      return memoryFile(name, Buffer.from(served.body, 'utf8'));
    } catch (err) {
      throw new FileError('ERR_FILE_UNREADABLE', 'ERR_GENERATOR', `${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async function artifact(name: string, parts: readonly string[]): Promise<OpenedFile> {
    const [release, a, b] = parts;
    try {
      const art = b === undefined ? await d.artifacts.resolve(release ?? '', a ?? '') : await d.artifacts.resolve(release ?? '', b, a);
      return await openLocalFile(art.path, name);
    } catch (err) {
      if (err instanceof AppError) throw err.kind === 'not-found' ? notFound(name, err.message) : new FileError('ERR_FILE_UNREADABLE', err.code, `${name}: ${err.message}`);
      throw err;
    }
  }

  return {
    async open(name, client) {
      // TFTP clients may send a leading slash (GRUB's `(tftp)/grub/grub.cfg` does).
      const path = name.replace(/^\/+/, '');
      if (path === 'grub/grub.cfg' || (path.startsWith('grub/grub.cfg-01-') && grubConfigQuery(path) !== null)) return grubConfig(path, client);
      const parts = path.split('/');
      if (parts[0] === SHIM_GRUB_PREFIX && parts.length === 3) {
        const file = d.chains[parts[1] as LoaderArch]?.get(parts[2] ?? '');
        if (!file) throw notFound(name, 'no signed boot loader of that name here');
        return openLocalFile(file, name);
      }
      if (parts[0] === 'artifacts' && (parts.length === 3 || parts.length === 4)) return artifact(name, parts.slice(1));
      throw notFound(name, 'not a boot file');
    },
  };
}
