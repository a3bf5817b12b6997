/**
 * Seeded randomness for fuzz loops: the same seed gives the same inputs, so a failure printed with
 * its seed and index can be replayed (`FUZZ_SEED=… node dist/test/<suite>.js`).
 */
export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** mulberry32: small, fast, good enough to pick inputs. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [min, max]. */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  /** A string of `n` characters from `alphabet`. */
  string(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

export function seedFromEnv(fallback: number): number {
  const given = process.env['FUZZ_SEED'];
  if (given === undefined || given === '') return fallback;
  const n = Number(given);
  if (!Number.isInteger(n)) throw new Error(`FUZZ_SEED must be an integer, got ${given}`);
  return n >>> 0;
}

/** One byte-level mutation: flip, insert, delete, duplicate a span, truncate or splice junk. */
export function mutateBytes(rng: Rng, input: Buffer): Buffer {
  const b = Buffer.from(input);
  const at = b.length === 0 ? 0 : rng.int(b.length);
  switch (rng.int(6)) {
    case 0:
      if (b.length > 0) b[at] = (b[at] as number) ^ (1 << rng.int(8));
      return b;
    case 1:
      return Buffer.concat([b.subarray(0, at), rng.bytes(rng.range(1, 8)), b.subarray(at)]);
    case 2:
      return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.range(1, 16)))]);
    case 3: {
      const span = b.subarray(at, at + rng.range(1, 32));
      return Buffer.concat([b.subarray(0, at), span, span, b.subarray(at)]);
    }
    case 4:
      return b.subarray(0, at);
    default: {
      const junk = rng.pick(['\u0000', '"', '\\', '{', '}', '[', ']', ',', ':', '\n', '\r\n', '\ufeff', '\xff\xfe', '%', '\u2028', '😀']);
      return Buffer.concat([b.subarray(0, at), Buffer.from(junk, junk === '\xff\xfe' ? 'latin1' : 'utf8'), b.subarray(at)]);
    }
  }
}

/** Strings that have broken parsers before: empty, huge, control and non-BMP characters, injections. */
export const NASTY_STRINGS: readonly string[] = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\n',
  '\t',
  '\u202e',
  '\ud83d',
  '😀',
  'ü',
  '%',
  '%00',
  '%zz',
  '..',
  '../../etc/passwd',
  '/',
  '\\',
  "'; DROP TABLE machines;--",
  '<script>alert(1)</script>',
  '{{ 7*7 }}',
  '${jndi:ldap://x}',
  '=cmd|"/c calc"!A1',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'null',
  'undefined',
  'NaN',
  '-1',
  '0',
  '1e309',
  '9007199254740993',
  'true',
  'x'.repeat(300),
  'y'.repeat(70_000),
];
