import type { RemoteInfo } from 'node:dgram';
import type { MachineFacts } from '../inventory/store.js';
import type { Mac } from '../lib/mac.js';
import type { ClientInfo } from './classify.js';
import type { Decision } from './decision.js';
import type { ServedInterface } from './interfaces.js';
import type { DhcpPacket } from './packet.js';
import type { Via } from './sockets.js';
import type { Route } from './targets.js';

/**
 * The values the loop hands from step to step: one per datagram (what came in, then what it
 * is), and one per answer (what was decided for it on one route). Every later step reads these,
 * never a list of loose arguments.
 */

/** A datagram as taken off a socket, waiting its turn. */
export interface Datagram {
  readonly msg: Buffer;
  readonly from: RemoteInfo;
  readonly via: Via;
  /** ms since the epoch at receipt (the service's clock): the time every decision about it uses. */
  readonly at: number;
  /** performance.now() at receipt, for the offer latency (the queue wait included: a client sees it). */
  readonly hr: number;
}

/** One client's request as the loop handles it: decoded, classified once, the client looked up. */
export interface Transaction {
  readonly req: DhcpPacket;
  readonly info: ClientInfo;
  /** chaddr as a MAC, or null when it is not an Ethernet address. */
  readonly mac: Mac | null;
  /** The inventory's machine with this MAC, or null: the client is not known. */
  readonly machine: MachineFacts | null;
  /** The served interface the request came in on, when it can be told (`interfaces.ts` `ingress`). */
  readonly ingress: ServedInterface | null;
  readonly from: RemoteInfo;
  readonly via: Via;
  readonly at: number;
  readonly hr: number;
}

/** A transaction from its datagram (one construction site, so every transaction has one shape). */
export function transaction(d: Pick<Datagram, 'from' | 'via' | 'at' | 'hr'>, req: DhcpPacket, info: ClientInfo, machine: MachineFacts | null, ingress: ServedInterface | null): Transaction {
  return { req, info, mac: info.mac, machine, ingress, from: d.from, via: d.via, at: d.at, hr: d.hr };
}

/** The same transaction with the machine as the inventory now has it (after a sighting). */
export function withMachine(tx: Transaction, machine: MachineFacts): Transaction {
  return transaction(tx, tx.req, tx.info, machine, tx.ingress);
}

/** What was decided for a transaction on one route, on its way out. */
export interface Answer {
  readonly tx: Transaction;
  readonly route: Route;
  readonly decision: Decision;
  /** The transaction's first answer: the one whose request and reply become the machine's events. */
  readonly first: boolean;
}

/** A transaction id as logs and events show it. */
export function xidHex(xid: number): string {
  return '0x' + xid.toString(16).padStart(8, '0');
}
