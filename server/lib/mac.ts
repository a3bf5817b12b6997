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

export function isMac(text: string): text is Mac {
  return parseMac(text) === text;
}

const HEX_BYTE: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** The canonical form of six raw bytes (DHCP chaddr, ARP). */
export function macFromBytes(bytes: Uint8Array): Mac {
  if (bytes.length < 6) throw new RangeError(`a MAC needs 6 bytes, got ${bytes.length}`);
  // Byte by byte from a table: the DHCP loop calls this for every datagram.
  const h = HEX_BYTE;
  return `${h[bytes[0] as number]}:${h[bytes[1] as number]}:${h[bytes[2] as number]}:${h[bytes[3] as number]}:${h[bytes[4] as number]}:${h[bytes[5] as number]}` as Mac;
}

export function macToBytes(mac: Mac): Buffer {
  return Buffer.from(mac.replace(/:/g, ''), 'hex');
}

/** `52-54-00-aa-bb-cc`: the form iPXE's `${net0/mac:hexhyp}` produces and file names tolerate. */
export function macHexHyphen(mac: Mac): string {
  return mac.replace(/:/g, '-');
}
