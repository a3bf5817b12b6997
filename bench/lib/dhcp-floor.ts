/**
 * The floor under any DHCP server written on Node's `dgram`: answers each DISCOVER with an OFFER
 * and each REQUEST with an ACK, built by copying the request's header and writing four options —
 * no decoding beyond option 53/50, no lease state, no persistence, no logging. Whatever CPU it
 * spends per exchange is the platform's (a datagram in, a datagram out, through libuv), not
 * racksmith's. `bench:dhcp` runs it like the real servers so their cost can be read against it.
 * Not a DHCP server: never run it outside a benchmark namespace.
 *   node bench/lib/dhcp-floor.js <listen address> <first pool address>
 */
import { createSocket } from 'node:dgram';
import { ipToInt, literalLookup } from '../../server/lib/ipv4.js';

const [listen = '0.0.0.0', first = '10.78.1.0'] = process.argv.slice(2);
const serverId = ipToInt(listen === '0.0.0.0' ? '127.0.0.1' : listen);
let next = ipToInt(first);
const socket = createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: 8 << 20, lookup: literalLookup });

socket.on('message', (msg, from) => {
  if (msg.length < 244 || msg[0] !== 1) return;
  let type = 0;
  let requested = -1;
  for (let i = 240; i < msg.length; ) {
    const code = msg[i] as number;
    if (code === 0) {
      i++;
      continue;
    }
    if (code === 255 || i + 1 >= msg.length) break;
    const len = msg[i + 1] as number;
    if (code === 53) type = msg[i + 2] as number;
    if (code === 50 && len === 4) requested = msg.readUInt32BE(i + 2);
    i += 2 + len;
  }
  if (type !== 1 && type !== 3) return;
  const out = Buffer.alloc(300);
  msg.copy(out, 0, 0, 236);
  out[0] = 2;
  out.writeUInt32BE(type === 1 ? next++ >>> 0 : requested >>> 0, 16);
  out.writeUInt32BE(0x63825363, 236);
  let o = 240;
  out[o++] = 53;
  out[o++] = 1;
  out[o++] = type === 1 ? 2 : 5;
  out[o++] = 54;
  out[o++] = 4;
  o = out.writeUInt32BE(serverId, o);
  out[o++] = 51;
  out[o++] = 4;
  o = out.writeUInt32BE(3600, o);
  out[o++] = 1;
  out[o++] = 4;
  o = out.writeUInt32BE(0xffff0000, o);
  out[o] = 255;
  // Relayed (giaddr set): back to the relay's server port; this bench only relays.
  socket.send(out, 67, from.address);
});
socket.bind(67, listen, () => process.stdout.write('FLOOR READY\n'));
process.on('SIGTERM', () => socket.close(() => process.exit(0)));
