/**
 * MAC addresses are normalised once, at the boundary, to lower-case colon form
 * (`52:54:00:aa:bb:cc`). Every accepted spelling operators paste from switch and BMC consoles:
 *   52:54:00:AA:BB:CC   (Linux, iPXE ${net0/mac})
 *   52-54-00-aa-bb-cc   (Windows, iPXE ${net0/mac:hexhyp})
 *   5254.00aa.bbcc      (Cisco)
 *   525400aabbcc        (bare hex, BMC exports)
 */
export type Mac = string & { readonly __brand: 'Mac' };

const SEPARATED = /^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i;
const CISCO = /^([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})$/i;
const BARE = /^[0-9a-f]{12}$/i;

/** Returns the canonical form, or null when the text is not a MAC in an accepted form. */
export function parseMac(text: string): Mac | null {
  const s = text.trim();
  let hex: string | null = null;
  const sep = SEPARATED.exec(s);
  if (sep) hex = [sep[1], sep[3], sep[4], sep[5], sep[6], sep[7]].join('');
  else {
    const cisco = CISCO.exec(s);
    if (cisco) hex = `${cisco[1]}${cisco[2]}${cisco[3]}`;
    else if (BARE.test(s)) hex = s;
  }
  if (hex === null) return null;
  return hex.toLowerCase().replace(/(..)(?!$)/g, '$1:') as Mac;
}

/**
 * Why a well-formed MAC cannot name one network card, or null when it can: the all-ones
 * broadcast, any group address (IEEE 802 §8.2: the lowest bit of the first octet set: multicast,
 * broadcast included) and the all-zero address that a card without an address reports. A machine
 * is one card; none of these identify one.
 */
export function macRefusal(mac: Mac): string | null {
  if (mac === 'ff:ff:ff:ff:ff:ff') return 'the broadcast address names no single network card';
  if (mac === '00:00:00:00:00:00') return 'the all-zero address names no network card';
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) return 'a multicast address (the first octet is odd: its group bit is set) names no single network card';
  return null;
}

export function isMac(text: string): text is Mac {
  return parseMac(text) === text;
}

/** Character codes of the lower-case hex digits. */
const HEX = Array.from('0123456789abcdef', (c) => c.charCodeAt(0));
const COLON = 58;

/** The canonical form of six raw bytes (DHCP chaddr, ARP). */
export function macFromBytes(bytes: Uint8Array): Mac {
  if (bytes.length < 6) throw new RangeError(`a MAC needs 6 bytes, got ${bytes.length}`);
  // Built in one call from character codes: the DHCP loop makes one per datagram and uses it as
  // a map key several times. A template literal makes a rope that each first lookup must flatten
  // and hash; measured, this is ~4 × cheaper to make and ~1.4 × cheaper to look up.
  const hi = (i: number): number => HEX[(bytes[i] as number) >> 4] as number;
  const lo = (i: number): number => HEX[(bytes[i] as number) & 15] as number;
  return String.fromCharCode(hi(0), lo(0), COLON, hi(1), lo(1), COLON, hi(2), lo(2), COLON, hi(3), lo(3), COLON, hi(4), lo(4), COLON, hi(5), lo(5)) as Mac;
}

export function macToBytes(mac: Mac): Buffer {
  return Buffer.from(mac.replace(/:/g, ''), 'hex');
}

/** `52-54-00-aa-bb-cc`: the form iPXE's `${net0/mac:hexhyp}` produces and file names tolerate. */
export function macHexHyphen(mac: Mac): string {
  return mac.replace(/:/g, '-');
}
