import { parse, UsageError, type Options } from './args.js';
import type { ClientFactory } from './inventory-commands.js';

/**
 * The tech at the rack: light a machine's locator LED to find it, and read (or let go of) the
 * serial console racksmith captures while it installs.
 */
type Out = (text: string) => void;

const COMMON: Options = { url: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } };

export const IDENTIFY_HELP = `Usage:
  racksmith machines identify MAC [--off] [--seconds N]

Lights the machine's locator LED through its BMC (IPMI chassis identify; Redfish
LocationIndicatorActive, or IndicatorLED on older BMCs) until turned off, or for N seconds.
--off turns it off.

Common: --url URL (RACKSMITH_URL) --token TOKEN (RACKSMITH_TOKEN) --json
`;

export const CONSOLE_HELP = `Usage:
  racksmith machines console MAC [--follow] [--detach | --attach]

Prints the serial console lines racksmith captured over IPMI SOL (the last 200). --follow keeps
printing new lines while the capture runs. --detach ends racksmith's SOL session so a person can
open their own (ipmitool sol activate): racksmith does not attach again for this install.
--attach asks racksmith to capture again.

Common: --url URL (RACKSMITH_URL) --token TOKEN (RACKSMITH_TOKEN) --json
`;

export async function identifyCommand(rest: readonly string[], client: ClientFactory, out: Out): Promise<void> {
  const { values, positionals } = parse(rest, { ...COMMON, off: { type: 'boolean' }, seconds: { type: 'string' } }, 1);
  if (values['help']) return out(IDENTIFY_HELP);
  const mac = positionals[0];
  if (!mac) throw new UsageError('machines identify: give the MAC');
  const secs = values['seconds'];
  if (secs !== undefined && (typeof secs !== 'string' || !/^\d{1,5}$/.test(secs) || Number(secs) < 1 || Number(secs) > 86_400)) throw new UsageError('--seconds must be a whole number from 1 to 86400');
  if (secs !== undefined && values['off']) throw new UsageError('--seconds goes with turning the LED on, not --off');
  const body = { on: !values['off'], ...(secs !== undefined ? { seconds: Number(secs) } : {}) };
  const r = await client(values).request<Record<string, unknown>>('POST', `/machines/${encodeURIComponent(mac)}/identify`, body);
  if (values['json']) return out(JSON.stringify(r, null, 2) + '\n');
  const who = `${String(r['hostname'] ?? r['mac'])} (${String(r['mac'])})`;
  out(body.on ? `${who}: locator LED on${secs !== undefined ? ` for ${secs} s` : ' until turned off (racksmith machines identify MAC --off)'}\n` : `${who}: locator LED off\n`);
}

interface ConsoleJson {
  mac: string;
  attached: boolean;
  state: string;
  reason: string | null;
  lines: { seq: number; text: string }[];
}

export async function consoleCommand(rest: readonly string[], client: ClientFactory, out: Out): Promise<void> {
  const { values, positionals } = parse(rest, { ...COMMON, follow: { type: 'boolean' }, detach: { type: 'boolean' }, attach: { type: 'boolean' } }, 1);
  if (values['help']) return out(CONSOLE_HELP);
  const mac = positionals[0];
  if (!mac) throw new UsageError('machines console: give the MAC');
  if (values['detach'] && values['attach']) throw new UsageError('--detach or --attach, not both');
  const api = client(values);
  const path = `/machines/${encodeURIComponent(mac)}/console`;
  if (values['detach'] || values['attach']) {
    const r = await api.request<ConsoleJson>('POST', path, { action: values['detach'] ? 'detach' : 'attach' });
    return out(values['json'] ? JSON.stringify(r, null, 2) + '\n' : `${r.mac}: console capture ${r.state}${r.reason ? ` (${r.reason})` : ''}\n`);
  }
  let after = 0;
  // --follow: bounded by the capture itself (it ends at ready, failed or a detach); a cap guards the loop.
  for (let i = 0; i < 24 * 3600; i++) {
    const r = await api.request<ConsoleJson>('GET', `${path}?after=${after}`);
    if (values['json']) out(JSON.stringify(r) + '\n');
    else for (const l of r.lines) out(`${l.text}\n`);
    after = r.lines.reduce((m, l) => Math.max(m, l.seq), after);
    if (!values['follow'] || !r.attached) {
      if (!values['json'] && values['follow']) out(`(console capture ${r.state}${r.reason ? `: ${r.reason}` : ''})\n`);
      return;
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}
