/**
 * Many PXE ROMs reading one bootfile at once, TFTP only (pxe-rom-tftp.ts), each from its own
 * address; runs inside a client namespace whose link holds those addresses:
 *   node tftp-burst.js '{"addresses":["10.77.1.1",…],"server":"10.77.0.1","file":"undionly.kpxe","size":74213,"sha256":"…","spreadMs":1000}'
 * Power-on times are spread evenly over `spreadMs` (0: all at once). Prints one JSON summary: how
 * many got the whole file (`size` bytes with the SHA-256 `sha256`) and how many never did, and why.
 */
import { romTftp } from './pxe-rom-tftp.js';

interface Args {
  readonly addresses: readonly string[];
  readonly server: string;
  readonly file: string;
  readonly size: number;
  readonly sha256: string;
  readonly spreadMs?: number;
  readonly loseFinalAck?: boolean;
}

const a = JSON.parse(process.argv[2] ?? '{}') as Args;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const started = Date.now();
const spread = a.spreadMs ?? 1000;
const results = await Promise.all(
  a.addresses.map(async (ip, i) => {
    await sleep((spread * i) / Math.max(1, a.addresses.length));
    const r = { retries: 0 };
    const t0 = Date.now();
    try {
      const got = await romTftp(r, ip, a.server, a.file, { loseFinalAck: a.loseFinalAck === true });
      const ok = got.bytes === a.size && got.sha256 === a.sha256;
      return { ip, ok, ms: Date.now() - t0, retries: r.retries, error: ok ? null : `${got.bytes} bytes, sha256 ${got.sha256.slice(0, 12)}…` };
    } catch (err) {
      return { ip, ok: false, ms: Date.now() - t0, retries: r.retries, error: (err as Error).message };
    }
  }),
);
const ok = results.filter((r) => r.ok);
const times = ok.map((r) => r.ms).sort((x, y) => x - y);
const errors = new Map<string, number>();
for (const r of results) if (!r.ok) errors.set(r.error ?? '?', (errors.get(r.error ?? '?') ?? 0) + 1);
process.stdout.write(
  JSON.stringify({
    clients: results.length,
    served: ok.length,
    never: results.length - ok.length,
    retried: results.filter((r) => r.retries > 0).length,
    p50Ms: times[Math.floor((times.length - 1) / 2)] ?? null,
    maxMs: times.at(-1) ?? null,
    wallMs: Date.now() - started,
    errors: Object.fromEntries(errors),
  }) + '\n',
);
