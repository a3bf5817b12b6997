/**
 * Which BMC settings belong to which protocol. One rule for the API (a BMC or patch that names its
 * driver) and the store's merge (a patch that does not, and so keeps the stored driver). Pure.
 */
export interface BmcProtocolSettings {
  readonly cipherSuite?: number | null | undefined;
  readonly systemId?: string | null | undefined;
  readonly verifyTls?: boolean | undefined;
  readonly tlsFingerprint?: string | null | undefined;
  readonly solCapture?: boolean | null | undefined;
}

/** The settings of `b` that the other protocol owns, with why: none when `b` fits `driver`. */
export function bmcProtocolProblems(driver: string, b: BmcProtocolSettings): { field: keyof BmcProtocolSettings; message: string }[] {
  const out: { field: keyof BmcProtocolSettings; message: string }[] = [];
  if (driver === 'ipmi') {
    for (const k of ['systemId', 'verifyTls', 'tlsFingerprint'] as const) if (b[k] !== undefined && b[k] !== null) out.push({ field: k, message: `${k} is a Redfish setting; this BMC uses IPMI` });
  } else if (driver === 'redfish') {
    if (b.cipherSuite !== undefined && b.cipherSuite !== null) out.push({ field: 'cipherSuite', message: 'cipherSuite is an IPMI setting; this BMC uses Redfish' });
    if (b.solCapture) out.push({ field: 'solCapture', message: 'serial console capture runs over IPMI SOL; a Redfish BMC cannot offer it here' });
  }
  return out;
}
