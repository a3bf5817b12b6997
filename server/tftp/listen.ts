import type { NetworkInterfaceInfo } from 'node:os';

/**
 * The address TFTP listens on: `--tftp-address` when it names one, else the first IPv4 address
 * of the DHCP interface (the segment the machines boot on). Never the wildcard: TFTP serves
 * boot files to whoever can reach it, so it answers only where the operator pointed it.
 */
export function tftpListenAddress(
  settings: { readonly tftpAddress?: string | undefined; readonly dhcpInterface?: string | undefined },
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>,
): { readonly address: string } | { readonly problem: string } {
  if (settings.tftpAddress !== undefined && settings.tftpAddress !== '0.0.0.0') return { address: settings.tftpAddress };
  const name = settings.dhcpInterface;
  if (!name) return { problem: 'no address to listen on: give --tftp-address ADDRESS or --dhcp-interface NAME, or --tftp-port 0' };
  const addrs = interfaces[name];
  if (!addrs) return { problem: `--tftp-address is unset and the DHCP interface ${name} does not exist` };
  const v4 = addrs.find((a) => a.family === 'IPv4');
  if (!v4) return { problem: `--tftp-address is unset and the DHCP interface ${name} has no IPv4 address` };
  return { address: v4.address };
}
