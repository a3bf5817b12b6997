import type { IPv4 } from '../lib/ipv4.js';
import { interfaceOn, type ServedInterface } from './interfaces.js';
import { ZERO_IP } from './packet.js';
import type { Transaction } from './transaction.js';

/**
 * Where answers to a request go out, and what the server calls itself on each: pure, over the
 * served interfaces as found at start.
 */

export interface ServedNetwork {
  readonly mode: 'proxy' | 'authoritative';
  readonly served: readonly ServedInterface[];
  /** The served interface on the pool's subnet (authoritative mode), or null. */
  readonly poolInterface: ServedInterface | null;
  /** `advertise-address`, else the first served interface's address. */
  readonly advertise: IPv4;
}

/** One way out for an answer: the interface it leaves through, and our address there. */
export interface Route {
  /** Null when no served interface can be named (a relayed request, or none matches). */
  readonly target: ServedInterface | null;
  /** Option 54: our address toward the client (RFC 2131 §4.3.1). */
  readonly serverId: IPv4;
  /** `siaddr`: where the TFTP bootfile is. */
  readonly nextServer: IPv4;
}

/**
 * The interfaces a reply may go out of. Known ingress: that one. A broadcast whose ingress is
 * unknown: authoritative mode answers from the pool's interface (the only one it can lease
 * on); proxy mode answers on every served interface, each with its own server address, and
 * the client sees only the copy sent on its own link.
 */
export function replyTargets(tx: Transaction, net: ServedNetwork): readonly (ServedInterface | null)[] {
  if (tx.ingress) return [tx.ingress];
  if (tx.req.giaddr !== ZERO_IP || tx.from.address !== ZERO_IP) return [null];
  if (net.mode === 'authoritative') return [net.poolInterface];
  return net.served.length > 0 ? net.served : [null];
}

/** The route for one target: the target's own address, else the served interface toward the client or relay. */
export function route(target: ServedInterface | null, tx: Transaction, net: ServedNetwork): Route {
  let serverId: IPv4;
  if (target) serverId = target.address;
  else {
    const toward = tx.req.giaddr !== ZERO_IP ? tx.req.giaddr : tx.from.address;
    serverId = (interfaceOn(net.served, toward)?.address ?? net.advertise) as IPv4;
  }
  return { target, serverId, nextServer: net.advertise };
}
