import type { BootScriptRecord, EventRepo, MachineRepo, NewEvent, Sighting } from '../inventory/store.js';
import type { Logger } from '../lib/log.js';
import type { Mac } from '../lib/mac.js';
import type { StepJournal } from './journal.js';
import { OPTION } from './options.js';
import { xidHex, type Answer } from './transaction.js';

/**
 * A known machine's DHCP steps become its events (`dhcp.discover`, `dhcp.offer`, `dhcp.ack`…),
 * and its last step becomes `dhcp`, through the journal (journal.ts). Clients the inventory does
 * not know leave no trace here.
 */

/** What recording needs of the inventory besides the journal. */
export interface DhcpEventSink {
  readonly machines: Pick<MachineRepo, 'recordSighting'>;
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

/** A request's or reply's event as a step of its machine: the event, its last step `dhcp`, and the facts when given. */
export function dhcpStep(e: NewEvent & { mac: Mac }, facts: Sighting | null): BootScriptRecord {
  const { mac, source, ...event } = e;
  return { sighting: facts ?? { mac, source: source ?? 'dhcp' }, transition: null, instanceId: null, event, lastStep: 'dhcp' };
}

export class DhcpEvents {
  constructor(
    private readonly sink: DhcpEventSink,
    private readonly journal: StepJournal,
    /** The service's mode (`proxy`, `authoritative`); boot-server answers say `boot-server`. */
    private readonly mode: string,
    private readonly log: Logger,
  ) {}

  /**
   * Records the request of the transaction's first answer, with the facts of a known machine's
   * first contact (`facts`) when there are any. Queued: the answer does not wait for it.
   */
  request(a: Answer, facts: Sighting | null): void {
    const e = requestEvent(a, this.mode);
    if (e?.mac) this.journal.record(dhcpStep({ ...e, mac: e.mac }, facts));
    else if (facts) this.sink.machines.recordSighting(facts).catch((err: unknown) => this.warn(facts.mac, err));
  }

  /** Records the reply that left (queued behind its request). */
  reply(a: Answer): void {
    const e = replyEvent(a, this.mode);
    if (e?.mac) this.journal.record(dhcpStep({ ...e, mac: e.mac }, null));
  }

  /** A segment ran out of its discovery allowance: logged and recorded once per run of refusals. */
  discoveryLimited(segment: string, mac: string | null): void {
    const message = `${segment}: more unknown PXE clients than its allowance (${mac ?? '?'} and later ones are answered but not recorded as machines)`;
    this.log.warn({ segment }, message);
    this.sink.events.append({ type: 'discovery.limited', source: 'dhcp', message, data: { path: 'dhcp', segment } }).catch((err: unknown) => this.log.warn({ err: String(err) }, 'DHCP: cannot record an event'));
  }

  private warn(mac: string, err: unknown): void {
    this.log.warn({ mac, err: err instanceof Error ? err.message : String(err) }, 'DHCP: could not record a machine step');
  }
}
