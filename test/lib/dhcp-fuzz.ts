import { decideAuthoritative, type AuthoritativeFacts } from '../../server/dhcp/authoritative.js';
import { classify, type BootConfig } from '../../server/dhcp/classify.js';
import { ProtocolError } from '../../server/dhcp/errors.js';
import { formatDhcp } from '../../server/dhcp/format.js';
import { decodeDhcp, encodeDhcp } from '../../server/dhcp/packet.js';
import { decideBootServer, decideProxy } from '../../server/dhcp/proxy.js';
import type { IPv4 } from '../../server/lib/ipv4.js';

/** A small seeded PRNG (mulberry32): the same seed gives the same mutations on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BOOT: BootConfig = { advertise: '10.77.0.1', httpPort: 8080, efiBootfile: 'ipxe.efi', arm64Bootfile: null };
const IP = (s: string): IPv4 => s as IPv4;
const FACTS: AuthoritativeFacts = {
  now: 1_700_000_000_000,
  serverId: IP('10.77.0.1'),
  nextServer: IP('10.77.0.1'),
  pool: { range: { start: IP('10.77.0.100'), end: IP('10.77.0.199') }, network: IP('10.77.0.0'), mask: IP('255.255.255.0'), router: IP('10.77.0.1'), dns: [], leaseSeconds: 600, cacheThreshold: 0.25 },
  ignoreUnknown: false,
  known: true,
  reservation: null,
  lease: null,
  offered: null,
  requested: null,
  candidate: IP('10.77.0.100'),
};

/** One mutation of a fixture: byte flips, truncation, extension, splices and option-length games. */
export function mutate(src: Buffer, rand: () => number, others: readonly Buffer[]): Buffer {
  let b = Buffer.from(src);
  const steps = 1 + Math.floor(rand() * 4);
  for (let s = 0; s < steps; s++) {
    const pick = Math.floor(rand() * 8);
    const at = Math.floor(rand() * Math.max(1, b.length));
    switch (pick) {
      case 0: // flip bytes
        for (let i = 0, n = 1 + Math.floor(rand() * 8); i < n; i++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
        break;
      case 1: // truncate
        b = b.subarray(0, Math.floor(rand() * b.length));
        break;
      case 2: // append random bytes
        b = Buffer.concat([b, Buffer.from(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)))]);
        break;
      case 3: // a bad length byte somewhere in the options
        if (b.length > 241) b[240 + Math.floor(rand() * (b.length - 240))] = [0, 1, 2, 3, 4, 16, 17, 255][Math.floor(rand() * 8)] as number;
        break;
      case 4: // splice in a piece of another fixture
        {
          const o = others[Math.floor(rand() * others.length)] as Buffer;
          const from = Math.floor(rand() * o.length);
          b = Buffer.concat([b.subarray(0, at), o.subarray(from, from + Math.floor(rand() * 80)), b.subarray(at)]);
        }
        break;
      case 5: // delete a run
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(rand() * 16))]);
        break;
      case 6: // turn on option overload and fill file/sname with random options
        if (b.length > 240) {
          b = Buffer.concat([b.subarray(0, 240), Buffer.from([52, 1, 1 + Math.floor(rand() * 3)]), b.subarray(240)]);
          for (let i = 44; i < 236; i++) if (rand() < 0.3) b[i] = Math.floor(rand() * 256);
        }
        break;
      default: // duplicate an option to exercise RFC 3396 concatenation
        if (b.length > 250) b = Buffer.concat([b, b.subarray(240, 240 + Math.floor(rand() * 40))]);
    }
  }
  return b;
}

export interface FuzzResult {
  readonly iterations: number;
  readonly decoded: number;
  readonly rejected: Record<string, number>;
}

/**
 * Decodes `iterations` mutations; each must decode (and then survive classification, the text
 * form, every decision and encoding of the reply) or throw ProtocolError. Anything else is
 * rethrown with the offending bytes in hex.
 */
export function fuzzDhcp(fixtures: readonly Buffer[], iterations: number, seed: number): FuzzResult {
  const rand = prng(seed);
  const rejected: Record<string, number> = {};
  let decoded = 0;
  for (let i = 0; i < iterations; i++) {
    const input = mutate(fixtures[i % fixtures.length] as Buffer, rand, fixtures);
    try {
      const p = decodeDhcp(input);
      formatDhcp(p);
      const info = classify(p, BOOT);
      for (const d of [decideAuthoritative(p, info, FACTS), decideProxy(p, info, FACTS), decideBootServer(p, info, FACTS)]) {
        if (d.reply) encodeDhcp(d.reply);
      }
      decoded++;
    } catch (err) {
      if (err instanceof ProtocolError) {
        rejected[err.code] = (rejected[err.code] ?? 0) + 1;
        continue;
      }
      throw new Error(`iteration ${i} (seed ${seed}) threw ${String(err)} for ${input.toString('hex')}`, { cause: err });
    }
  }
  return { iterations, decoded, rejected };
}
