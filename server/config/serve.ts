import { ServiceStartError } from '../lib/service.js';
import type { Config } from './settings.js';

/**
 * What `serve` refuses before it opens anything: DHCP and TFTP answer whoever can reach them, so
 * they listen only where the operator said. DHCP in proxy or authoritative mode needs its
 * interface named; TFTP listens on `--tftp-address` or, when that is unset (or 0.0.0.0), on the
 * DHCP interface's address. A service turned off needs neither.
 */
export function serveRefusal(config: Pick<Config, 'dhcpMode' | 'dhcpInterface' | 'tftpPort' | 'tftpAddress'>): ServiceStartError | null {
  if (config.dhcpMode !== 'off' && !config.dhcpInterface) return noDhcpInterface(config.dhcpMode);
  if (config.tftpPort !== 0 && !namedAddress(config.tftpAddress) && !config.dhcpInterface) {
    return new ServiceStartError(
      'tftp',
      'tftp-address',
      'TFTP listens only on a named address: give --tftp-address ADDRESS (RACKSMITH_TFTP_ADDRESS) or --dhcp-interface NAME (TFTP then uses its address), or --tftp-port 0',
    );
  }
  return null;
}

/** An address that names one interface: not unset, not the wildcard. */
export function namedAddress(address: string | undefined): address is string {
  return address !== undefined && address !== '0.0.0.0';
}

export function noDhcpInterface(mode: string): ServiceStartError {
  return new ServiceStartError('dhcp', 'dhcp-interface', `DHCP mode ${mode} answers PXE only on a named interface: give --dhcp-interface NAME (RACKSMITH_DHCP_INTERFACE), or --dhcp-mode off`);
}
