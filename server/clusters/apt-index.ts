/**
 * The parts of an apt repository the preflight reads, parsed as apt reads them (deb822 control
 * stanzas, Debian Policy §5.1): a suite's `Release` file — its fields and the index files it
 * lists — and a `Packages` index — each package's versions. Pure; any text gives a result or a
 * typed error, never a crash.
 */
export class AptIndexError extends Error {
  readonly code = 'ERR_APT_INDEX';
  constructor(message: string) {
    super(message);
    this.name = 'AptIndexError';
  }
}

export type Stanza = ReadonlyMap<string, string>;

/** Control stanzas: `Field: value` lines, continuation lines start with a space or tab, blank lines separate. */
export function parseStanzas(text: string): Stanza[] {
  const out: Stanza[] = [];
  let cur = new Map<string, string>();
  let last: string | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') {
      if (cur.size > 0) out.push(cur);
      cur = new Map();
      last = null;
      continue;
    }
    if (line.startsWith('#')) continue;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (last !== null) cur.set(last, `${cur.get(last) ?? ''}\n${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    last = line.slice(0, colon).trim().toLowerCase();
    cur.set(last, line.slice(colon + 1).trim());
  }
  if (cur.size > 0) out.push(cur);
  return out;
}

/** An `InRelease` is a clear-signed `Release`: the signed text is the file. */
export function unsign(text: string): string {
  const begin = text.indexOf('-----BEGIN PGP SIGNED MESSAGE-----');
  if (begin < 0) return text;
  const afterHeaders = text.indexOf('\n\n', begin);
  const end = text.indexOf('-----BEGIN PGP SIGNATURE-----', afterHeaders);
  if (afterHeaders < 0 || end < 0) throw new AptIndexError('a clear-signed file without its signed text');
  return text.slice(afterHeaders + 2, end).replace(/^- /gm, '');
}

export interface ReleaseFile {
  readonly origin: string | null;
  readonly suite: string | null;
  readonly codename: string | null;
  readonly date: string | null;
  readonly components: readonly string[];
  readonly architectures: readonly string[];
  /** Index files it lists (paths relative to the Release file), from SHA256 (else MD5Sum). */
  readonly files: readonly string[];
}

export function parseRelease(text: string): ReleaseFile {
  const stanza = parseStanzas(unsign(text))[0];
  if (!stanza || !['suite', 'codename', 'origin', 'label', 'date', 'sha256', 'md5sum'].some((k) => stanza.has(k))) {
    throw new AptIndexError('not a Release file: none of Origin, Suite, Codename, Date or a checksum list');
  }
  const listed = stanza.get('sha256') ?? stanza.get('sha512') ?? stanza.get('md5sum') ?? '';
  const files = listed
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((p) => p.length === 3 && p[2] !== undefined)
    .map((p) => p[2] as string);
  const words = (k: string): string[] => (stanza.get(k) ?? '').split(/\s+/).filter(Boolean);
  return {
    origin: stanza.get('origin') ?? null,
    suite: stanza.get('suite') ?? null,
    codename: stanza.get('codename') ?? null,
    date: stanza.get('date') ?? null,
    components: words('components'),
    architectures: words('architectures'),
    files,
  };
}

/**
 * Which Packages index of a directory (`main/binary-amd64/`, or `` in a flat repository) to read:
 * the gzip one when the Release lists it (apt prefers a compressed index; Node reads gzip), else
 * the plain one; an index the Release does not list is tried in that order anyway.
 */
export function packagesIndexCandidates(release: ReleaseFile, dir: string): string[] {
  const names = [`${dir}Packages.gz`, `${dir}Packages`];
  const listed = names.filter((n) => release.files.includes(n));
  return listed.length > 0 ? listed : names;
}

/** Every version of each package name in a Packages index. */
export function packageVersions(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const s of parseStanzas(text)) {
    const name = s.get('package');
    const version = s.get('version');
    if (!name || !version) continue;
    const list = out.get(name);
    if (list) {
      if (!list.includes(version)) list.push(version);
    } else out.set(name, [version]);
  }
  return out;
}

/**
 * apt's `pkg=version` with a glob (`1.28.4-*`, `5:19.03.*`): `*` any run of characters, `?` one,
 * everything else literal (apt matches with fnmatch).
 */
export function matchesVersion(pattern: string, version: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(version);
}
