import type { EventRepo, MachineRepo, NewEvent } from '../inventory/store.js';
import type { Logger } from '../lib/log.js';
import { OPTION } from './options.js';
import { xidHex, type Answer } from './transaction.js';

/**
 * A known machine's DHCP steps become its events (`dhcp.discover`, `dhcp.offer`, `dhcp.ack`…),
 * and its last step becomes `dhcp`. Clients the inventory does not know leave no trace here.
 */

/** What recording needs of the inventory. */
export interface DhcpEventSink {
  readonly machines: Pick<MachineRepo, 'setLastStep'>;
  readonly events: Pick<EventRepo, 'append'>;
}

/** Whose steps are recorded: a known machine's DHCP requests (not BOOTP, not a reply seen on the wire). */
function recorded(a: Answer): boolean {
  const { tx } = a;
  return tx.machine !== null && tx.mac !== null && tx.req.op === 'BOOTREQUEST' && tx.info.messageType !== null;
}

function base(a: Answer, mode: string): Record<string, unknown> {
  const { tx } = a;
  const { info } = tx;
  return {
    mode: tx.via.kind === 'boot-server' ? 'boot-server' : mode,
    xid: xidHex(tx.req.xid),
    from: tx.from.address,
    arch: info.arch,
    firmware: info.firmware,
    ipxe: info.ipxe || info.chainloaded,
  };
}

/** The event for what the client asked, or null (not recorded, or a request ignored as not ours). */
export function requestEvent(a: Answer, mode: string): NewEvent | null {
  if (!recorded(a)) return null;
  const d = a.decision;
  if (!d.reply && d.reason.startsWith('ignored-')) return null;
  const { info } = a.tx;
  const type = info.messageType as string;
  return {
    mac: a.tx.mac,
    type: `dhcp.${type}`,
    source: 'dhcp',
    message: `DHCP ${type.toUpperCase()} (${[info.firmware, info.arch, info.ipxe ? 'iPXE' : info.pxe ? 'PXE' : null].filter(Boolean).join(' ') || 'no boot info'})`,
    data: { ...base(a, mode), vendorClass: info.vendorClass, userClasses: info.userClasses, archCode: info.archCode },
  };
}

/** The event for the reply that left, or null. */
export function replyEvent(a: Answer, mode: string): NewEvent | null {
  const d = a.decision;
  if (!recorded(a) || !d.reply) return null;
  const { info } = a.tx;
  const type = d.reply.options.get(OPTION.MESSAGE_TYPE)?.[0] === 6 ? 'nak' : d.reason === 'offer' || d.reason === 'proxy-offer' ? 'offer' : 'ack';
  const ip = d.reply.yiaddr !== '0.0.0.0' ? d.reply.yiaddr : null;
  const bootfile = info.bootfile?.name ?? null;
  return {
    mac: a.tx.mac,
    type: `dhcp.${type}`,
    source: 'dhcp',
    message: `DHCP ${type.toUpperCase()}${ip ? ` ${ip}` : ''}${bootfile && type !== 'nak' ? ` bootfile ${bootfile}` : ''} (${d.reason})`,
    data: { ...base(a, mode), reason: d.reason, ip, bootfile, bootfileKind: info.bootfile?.kind ?? null, rule: info.bootfile?.rule ?? null },
  };
}

export class DhcpEvents {
  constructor(
    private readonly sink: DhcpEventSink,
    /** The service's mode (`proxy`, `authoritative`); boot-server answers say `boot-server`. */
    private readonly mode: string,
    private readonly log: Logger,
  ) {}

  /** Records the request of the transaction's first answer; undefined when there is nothing to wait for. */
  request(a: Answer): Promise<void> | undefined {
    const e = requestEvent(a, this.mode);
    return e ? this.append(e) : undefined;
  }

  /** Records the reply that left. */
  reply(a: Answer): Promise<void> | undefined {
    const e = replyEvent(a, this.mode);
    return e ? this.append(e) : undefined;
  }

  /** A segment ran out of its discovery allowance: logged and recorded once per run of refusals. */
  discoveryLimited(segment: string, mac: string | null): void {
    const message = `${segment}: more unknown PXE clients than its allowance (${mac ?? '?'} and later ones are answered but not recorded as machines)`;
    this.log.warn({ segment }, message);
    this.sink.events.append({ type: 'discovery.limited', source: 'dhcp', message, data: { path: 'dhcp', segment } }).catch((err: unknown) => this.log.warn({ err: String(err) }, 'DHCP: cannot record an event'));
  }

  /** Never rejects: a machine's event that cannot be written is logged, and DHCP goes on. */
  private async append(e: NewEvent): Promise<void> {
    try {
      await this.sink.events.append(e);
      await this.sink.machines.setLastStep(e.mac as NonNullable<NewEvent['mac']>, 'dhcp');
    } catch (err) {
      this.log.warn({ mac: e.mac, err: err instanceof Error ? err.message : String(err) }, 'DHCP: could not record a machine event');
    }
  }
}
