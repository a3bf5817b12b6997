import { createHash } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { decodeTftp, encodeTftp, type TftpPacket } from '../../server/tftp/packet.js';

/**
 * The TFTP read of a BIOS PXE ROM, as the boot-burst bench and the burst test simulate it: an RRQ
 * with blksize 1468 and tsize (what iPXE and EDK2 ask), ACK 0 for the OACK, lockstep ACKs, and
 * the same datagram sent again from the same port when nothing comes, backing off 1, 2, 4, 8, 8,
 * 8 s (~30 s in all) before the boot fails. Like the firmware it does not dally after its final
 * ACK (RFC 1350 §6 allows that), but the ACK does leave before the socket closes.
 */
const TFTP_TIMEOUTS = [1000, 2000, 4000, 8000, 8000, 8000];

export interface RomTftpOptions {
  /** The final ACK is lost on the wire (never sent): what the server sees of a ROM whose last ACK is dropped. */
  readonly loseFinalAck?: boolean;
}

/** A lockstep read of `file` from `server`, from the machine's own address: what arrived. */
export async function romTftp(r: { retries: number }, local: string, server: string, file: string, opts: RomTftpOptions = {}): Promise<{ bytes: number; sha256: string }> {
  const sock: Socket = createSocket('udp4');
  const queue: { p: TftpPacket; port: number }[] = [];
  let wake: (() => void) | null = null;
  sock.on('message', (msg, from) => {
    try {
      queue.push({ p: decodeTftp(msg), port: from.port });
    } catch {
      return;
    }
    wake?.();
  });
  const next = async (ms: number): Promise<{ p: TftpPacket; port: number } | null> => {
    const until = Date.now() + ms;
    while (queue.length === 0) {
      const left = until - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        wake = () => {
          clearTimeout(t);
          res();
        };
      });
      wake = null;
    }
    return queue.shift() ?? null;
  };
  await new Promise<void>((res, rej) => {
    sock.once('error', rej);
    sock.bind(0, local, () => res());
  });
  try {
    const rrq = encodeTftp({ op: 'RRQ', filename: file, mode: 'octet', options: [{ name: 'blksize', value: '1468' }, { name: 'tsize', value: '0' }] });
    let last = rrq;
    let to = 69;
    let blksize = 512;
    let expect = 1;
    let bytes = 0;
    const hash = createHash('sha256');
    let tries = 0;
    sock.send(rrq, 69, server);
    for (;;) {
      const got = await next(TFTP_TIMEOUTS[Math.min(tries, TFTP_TIMEOUTS.length - 1)] as number);
      if (!got) {
        if (++tries >= TFTP_TIMEOUTS.length) throw new Error(`TFTP ${file}: no answer after block ${expect - 1}`);
        r.retries++;
        sock.send(last, to, server);
        continue;
      }
      const { p, port } = got;
      if (p.op === 'ERROR') throw new Error(`TFTP ${file}: error ${p.code} ${p.message}`);
      if (p.op === 'OACK' && expect === 1) {
        to = port;
        blksize = Number(p.options.find((o) => o.name.toLowerCase() === 'blksize')?.value ?? 512);
        last = encodeTftp({ op: 'ACK', block: 0 });
        sock.send(last, to, server);
        continue;
      }
      if (p.op !== 'DATA') continue;
      if (expect === 1) to = port;
      if (p.block !== (expect & 0xffff)) continue; // a duplicate: our ACK of it is on its way
      tries = 0;
      bytes += p.data.length;
      hash.update(p.data);
      last = encodeTftp({ op: 'ACK', block: p.block });
      expect++;
      if (p.data.length < blksize) {
        // send() is asynchronous: a socket closed in the same tick drops the datagram unsent.
        if (!opts.loseFinalAck) await new Promise<void>((res) => sock.send(last, to, server, () => res()));
        return { bytes, sha256: hash.digest('hex') };
      }
      sock.send(last, to, server);
    }
  } finally {
    sock.close();
  }
}
