import * as assert from 'uvu/assert';

/** The shape every codec shares (dns-packet style): encode, decode, encodingLength. */
export interface Codec<T> {
  encode(value: T): Buffer;
  decode(bytes: Uint8Array): T;
  encodingLength(value: T): number;
}

/**
 * One round-trip check for every codec: decoding what was encoded gives the value back, encoding
 * is deterministic (encode ∘ decode ∘ encode = encode), and encodingLength does not under-count.
 * Starting from bytes (a capture), the decoded value is the reference: capture padding and
 * option order need not survive, meaning must.
 */
export function roundTrip<T>(codec: Codec<T>, start: T | Uint8Array, label = 'value'): T {
  const value = start instanceof Uint8Array ? codec.decode(start) : start;
  const bytes = codec.encode(value);
  assert.ok(codec.encodingLength(value) <= bytes.length, `${label}: encodingLength ${codec.encodingLength(value)} > encoded ${bytes.length}`);
  const again = codec.decode(bytes);
  assert.equal(again, value, `${label}: decode(encode(x)) differs from x`);
  assert.ok(codec.encode(again).equals(bytes), `${label}: encoding is not deterministic`);
  return again;
}
