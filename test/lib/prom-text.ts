/**
 * A strict reader of the Prometheus text exposition format 0.0.4, written for the tests: it
 * refuses anything a Prometheus server would refuse (bad names, bad escapes, samples before their
 * TYPE, duplicate series, inconsistent histograms), so that "it parses" means something.
 */

export type PromType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PromFamily {
  readonly name: string;
  readonly type: PromType;
  help: string | undefined;
  readonly samples: PromSample[];
}

export class PromParseError extends Error {
  readonly code = 'ERR_PROM_TEXT';
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = 'PromParseError';
  }
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s: string, line: number): number {
  // Prometheus reads values with Go's ParseFloat: Inf and NaN in any letter case (prom-client writes "Nan").
  if (/^\+?inf(inity)?$/i.test(s)) return Infinity;
  if (/^-inf(inity)?$/i.test(s)) return -Infinity;
  if (/^nan$/i.test(s)) return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new PromParseError(line, `"${s}" is not a number`);
  return Number(s);
}

/** `{a="x",b="y\"z"}` starting at text[i] === '{'; returns labels and the index after '}'. */
function parseLabels(text: string, start: number, line: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  let i = start + 1;
  for (;;) {
    if (text[i] === '}') return [labels, i + 1];
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new PromParseError(line, 'label without "="');
    const name = text.slice(i, eq).trim();
    if (!LABEL.test(name)) throw new PromParseError(line, `bad label name "${name}"`);
    if (name in labels) throw new PromParseError(line, `label "${name}" given twice`);
    if (text[eq + 1] !== '"') throw new PromParseError(line, `label ${name}: value must be quoted`);
    let value = '';
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === '\\') {
        const next = text[++j];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else throw new PromParseError(line, `label ${name}: bad escape "\\${next ?? ''}"`);
      } else value += text[j];
    }
    if (text[j] !== '"') throw new PromParseError(line, `label ${name}: unterminated value`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new PromParseError(line, `expected "," or "}" after label ${name}`);
  }
}

function familyOf(sampleName: string, families: Map<string, PromFamily>): PromFamily | undefined {
  const direct = families.get(sampleName);
  if (direct) return direct;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sampleName.endsWith(suffix)) continue;
    const f = families.get(sampleName.slice(0, -suffix.length));
    if (f && (f.type === 'histogram' || f.type === 'summary')) return f;
  }
  return undefined;
}

export function parsePromText(text: string): Map<string, PromFamily> {
  if (!text.endsWith('\n')) throw new PromParseError(0, 'the exposition must end with a line feed');
  const families = new Map<string, PromFamily>();
  const series = new Set<string>();
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((raw, index) => {
    const n = index + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(raw);
      if (!m) return; // other comments are allowed
      const [, kind, name = '', rest = ''] = m;
      if (!NAME.test(name)) throw new PromParseError(n, `bad metric name "${name}"`);
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new PromParseError(n, `unknown type "${rest}"`);
        const existing = families.get(name);
        if (existing && existing.samples.length > 0) throw new PromParseError(n, `TYPE for ${name} after its samples`);
        if (existing && existing.type !== 'untyped') throw new PromParseError(n, `second TYPE for ${name}`);
        families.set(name, { name, type: rest as PromType, help: existing?.help, samples: [] });
      } else {
        const f = families.get(name);
        if (f?.help !== undefined) throw new PromParseError(n, `second HELP for ${name}`);
        if (f) f.help = rest;
        else families.set(name, { name, type: 'untyped', help: rest, samples: [] });
      }
      return;
    }
    const nameEnd = raw.search(/[{ ]/);
    if (nameEnd <= 0) throw new PromParseError(n, 'a sample needs a name and a value');
    const name = raw.slice(0, nameEnd);
    if (!NAME.test(name)) throw new PromParseError(n, `bad metric name "${name}"`);
    let labels: Record<string, string> = {};
    let i = nameEnd;
    if (raw[i] === '{') [labels, i] = parseLabels(raw, i, n);
    const parts = raw.slice(i).trim().split(/ +/);
    if (parts.length < 1 || parts.length > 2 || parts[0] === '') throw new PromParseError(n, 'expected "value [timestamp]"');
    const value = parseValue(parts[0] ?? '', n);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new PromParseError(n, `bad timestamp "${parts[1]}"`);
    let family = familyOf(name, families);
    if (!family) {
      family = { name, type: 'untyped', help: undefined, samples: [] };
      families.set(name, family);
    }
    const key = name + JSON.stringify(Object.entries(labels).sort());
    if (series.has(key)) throw new PromParseError(n, `duplicate series ${key}`);
    series.add(key);
    if (family.type === 'counter' && !(value >= 0)) throw new PromParseError(n, `counter ${name} is negative or NaN`);
    if (family.type === 'histogram' && name === family.name) throw new PromParseError(n, `histogram ${name} has a bare sample`);
    if (family.type === 'histogram' && name.endsWith('_bucket') && labels['le'] === undefined) throw new PromParseError(n, `bucket without "le"`);
    family.samples.push({ name, labels, value });
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

/** Buckets cumulative and ending in +Inf, which equals _count, per label set. */
function checkHistogram(f: PromFamily): void {
  const groups = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(key) ?? { buckets: [] };
    groups.set(key, g);
    if (s.name.endsWith('_bucket')) g.buckets.push([parseValue(le ?? '', 0), s.value]);
    else if (s.name.endsWith('_count')) g.count = s.value;
    else if (s.name.endsWith('_sum')) g.sum = s.value;
  }
  for (const [key, g] of groups) {
    const last = g.buckets.at(-1);
    if (!last || last[0] !== Infinity) throw new PromParseError(0, `${f.name}${key}: no +Inf bucket`);
    for (let i = 1; i < g.buckets.length; i++) {
      const [le, c] = g.buckets[i] ?? [0, 0];
      const [ple, pc] = g.buckets[i - 1] ?? [0, 0];
      if (!(le > ple)) throw new PromParseError(0, `${f.name}${key}: bucket bounds not increasing`);
      if (c < pc) throw new PromParseError(0, `${f.name}${key}: buckets not cumulative`);
    }
    if (g.count === undefined || g.sum === undefined) throw new PromParseError(0, `${f.name}${key}: _count or _sum missing`);
    if (g.count !== last[1]) throw new PromParseError(0, `${f.name}${key}: +Inf bucket ${last[1]} ≠ _count ${g.count}`);
  }
}

/** The value of one series, or undefined. Labels not given must be absent from the series. */
export function promValue(families: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      const keys = Object.keys(s.labels);
      if (keys.length === Object.keys(labels).length && keys.every((k) => s.labels[k] === labels[k])) return s.value;
    }
  }
  return undefined;
}
