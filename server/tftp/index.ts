import { createDirectorySource, createFileRegistry, layeredSource, type FileRegistry, type FileSource } from '../lib/files.js';
import { silentLogger } from '../lib/log.js';
import { mtuTowards } from '../lib/netif.js';
import { TftpServer, type TftpDeps, type TftpService, type TftpSettings } from './server.js';

export type { TftpCounters, TftpDeps, TftpInventory, TftpService, TftpSettings, TransferSummary } from './server.js';

/** Settings checked once, at creation (the config loader has already validated each one). */
function check(settings: TftpSettings): void {
  if (settings.tftpMaxBlksize < 512) throw new RangeError('tftp-max-blksize must be at least 512');
}

/**
 * The TFTP service. `deps.files` is usually `tftpFiles(...)`: generated files first, then the
 * jailed root directory.
 */
export function createTftpService(settings: TftpSettings, deps: TftpDeps): TftpService {
  check(settings);
  return new TftpServer(settings, { mtuTowards, ...deps }, silentLogger());
}

export interface TftpFiles {
  readonly source: FileSource;
  /** Where other parts register generated files (served before the directory). */
  readonly generated: FileRegistry;
}

/** The default file source: a registry of generated files in front of the jailed TFTP root. */
export function tftpFiles(settings: { readonly tftpRoot: string; readonly tftpAllowLinks: readonly string[] }, generated: FileRegistry = createFileRegistry()): TftpFiles {
  const directory = createDirectorySource(settings.tftpRoot, { allowLinksTo: settings.tftpAllowLinks });
  return { source: layeredSource([generated, directory]), generated };
}
