import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createSseParser, formatSse, formatSseComment, SseError, type SseEvent, type SseMessage } from '../server/lib/sse.js';

/** The event-stream wire format: what the server writes, the parser reads back, however it is chunked. */
const test = suite('sse: format and parse');

function parseAll(text: string, chunks: readonly number[] = [text.length]): SseEvent[] {
  const out: SseEvent[] = [];
  const p = createSseParser((e) => out.push(e));
  let at = 0;
  for (const n of chunks) {
    p.push(text.slice(at, at + n));
    at += n;
  }
  p.push(text.slice(at));
  return out;
}

const CASES: readonly { name: string; msgs: SseMessage[]; want: { id: string; event: string; data: string }[] }[] = [
  { name: 'one event', msgs: [{ id: 1, data: '{"a":1}' }], want: [{ id: '1', event: 'message', data: '{"a":1}' }] },
  { name: 'named event without id keeps the previous id', msgs: [{ id: 7, data: 'x' }, { event: 'hello', data: 'y' }], want: [{ id: '7', event: 'message', data: 'x' }, { id: '7', event: 'hello', data: 'y' }] },
  { name: 'multi-line data', msgs: [{ id: 2, data: 'a\nb\r\nc' }], want: [{ id: '2', event: 'message', data: 'a\nb\nc' }] },
  { name: 'empty data line still dispatches', msgs: [{ data: '' }], want: [{ id: '', event: 'message', data: '' }] },
  { name: 'retry only with data', msgs: [{ retry: 3000, event: 'hello', data: '{}' }], want: [{ id: '', event: 'hello', data: '{}' }] },
];

test('named cases round-trip', () => {
  for (const c of CASES) {
    const text = c.msgs.map(formatSse).join('');
    assert.equal(parseAll(text), c.want, c.name);
  }
});

test('comments, CRLF and CR line ends, a BOM and unknown fields', () => {
  const text = '\uFEFF: keep-alive\r\n\r\nid: 5\rdata: one\r\nfoo: bar\n\n' + formatSseComment('ping\npong') + 'data:two\n\n';
  assert.equal(parseAll(text), [
    { id: '5', event: 'message', data: 'one' },
    { id: '5', event: 'message', data: 'two' },
  ]);
});

test('a CRLF split across chunks is one line end', () => {
  const text = 'id: 9\r\ndata: x\r\n\r\n';
  for (let cut = 0; cut <= text.length; cut++) assert.equal(parseAll(text, [cut]), [{ id: '9', event: 'message', data: 'x' }], `cut at ${cut}`);
});

test('the retry field is read', () => {
  const p = createSseParser(() => undefined);
  p.push(formatSse({ retry: 1500, data: 'x' }));
  assert.is(p.retry(), 1500);
});

test('ids and names that would break the framing are refused with a code', () => {
  for (const bad of [{ id: '1\n2', data: '' }, { event: 'a\rb', data: '' }, { id: 'a\0', data: '' }] as SseMessage[]) {
    try {
      formatSse(bad);
      assert.unreachable('should throw');
    } catch (err) {
      assert.instance(err, SseError);
      assert.is((err as SseError).code, 'ERR_SSE_FIELD');
    }
  }
});

test('an endless line is cut off with ERR_SSE_LINE_TOO_LONG', () => {
  const p = createSseParser(() => undefined, 1000);
  try {
    for (let i = 0; i < 20; i++) p.push('data: ' + 'x'.repeat(100));
    assert.unreachable('should throw');
  } catch (err) {
    assert.is((err as SseError).code, 'ERR_SSE_LINE_TOO_LONG');
  }
});

/** Mulberry32: a small seeded generator, so a failing case can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('fuzz: any chunking of a formatted stream parses to the same events (seeded)', () => {
  const seed = Number(process.env['FUZZ_SEED'] ?? 20261125);
  const rand = rng(seed);
  for (let round = 0; round < 300; round++) {
    const msgs: SseMessage[] = [];
    const n = 1 + Math.floor(rand() * 6);
    for (let i = 0; i < n; i++) {
      const data = Array.from({ length: Math.floor(rand() * 4) }, () => JSON.stringify({ v: rand().toString(36), s: 'é\u2028"' })).join(['\n', '\r\n', '\r'][Math.floor(rand() * 3)]);
      msgs.push({ id: rand() < 0.8 ? round * 10 + i : undefined, event: rand() < 0.2 ? 'hello' : undefined, data });
    }
    const text = msgs.map(formatSse).join(rand() < 0.5 ? '' : formatSseComment('keep-alive'));
    const whole = parseAll(text);
    const chunks: number[] = [];
    for (let left = text.length; left > 0; ) {
      const k = 1 + Math.floor(rand() * 17);
      chunks.push(k);
      left -= k;
    }
    assert.equal(parseAll(text, chunks), whole, `seed ${seed} round ${round}`);
    assert.is(whole.length, msgs.length, `seed ${seed} round ${round}`);
  }
});

test('fuzz: random text either parses or throws the typed error, nothing else (seeded)', () => {
  const seed = Number(process.env['FUZZ_SEED'] ?? 7);
  const rand = rng(seed);
  const alphabet = ['d', 'a', 't', ':', ' ', '\n', '\r', 'i', 'e', 'v', 'n', '\0', '\uFEFF', 'x'];
  for (let round = 0; round < 2000; round++) {
    const p = createSseParser(() => undefined, 64);
    const len = Math.floor(rand() * 200);
    let s = '';
    for (let i = 0; i < len; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
    try {
      p.push(s);
    } catch (err) {
      assert.instance(err, SseError, `seed ${seed} round ${round}`);
    }
  }
});

test.run();
