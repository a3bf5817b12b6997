import type { BmcDriverName, BmcFactsRecord } from '../inventory/model.js';

/**
 * The one interface every power driver implements (IPMI through ipmitool, Redfish over HTTPS). A
 * driver talks to one BMC per call and knows nothing of machines, states or events: the power service turns its results into inventory events.
 */

export const POWER_STATES = ['on', 'off'] as const;
export type PowerState = (typeof POWER_STATES)[number];

export const BOOT_DEVICES = ['pxe', 'disk'] as const;
export type BootDevice = (typeof BOOT_DEVICES)[number];

export interface BootOptions {
  /** UEFI boot (ipmitool `options=efiboot`); false means legacy BIOS boot. */
  readonly efi: boolean;
  /** Every boot, not only the next one. Many BMCs ignore this flag. */
  readonly persistent: boolean;
  /** UEFI HTTP boot instead of PXE where the BMC offers it (Redfish `UefiHttp`); IPMI has no such device. */
  readonly http?: boolean | undefined;
}

export type { BmcDriverName };

/** Where a BMC is and how to log in; the password is in clear only in memory, for one call. */
export interface BmcTarget {
  readonly address: string;
  readonly port: number;
  readonly username: string;
  readonly password: string;
  /** The machine's configured IPMI cipher suite, or null for the driver's default order. */
  readonly cipherSuite: number | null;
  /** Which driver speaks to this BMC; absent means IPMI. */
  readonly driver?: BmcDriverName | undefined;
  /** Redfish: the ComputerSystem's id; null means the BMC's only system. */
  readonly systemId?: string | null | undefined;
  /** Redfish: check the BMC's certificate against the system's CAs (default true). */
  readonly verifyTls?: boolean | undefined;
  /** Redfish: the SHA-256 fingerprint of the one certificate to accept (a BMC's self-signed one). */
  readonly tlsFingerprint?: string | null | undefined;
}

/** What a BMC says about its machine (a status call records it on the machine, with the time). */
export type BmcFacts = Omit<BmcFactsRecord, 'collectedAt'>;

/** How a call went, for the event log. */
export interface PowerCallInfo {
  readonly attempts: number;
  /** The cipher suite that worked (IPMI), or null. */
  readonly cipherSuite: number | null;
  readonly ms: number;
  /** Something the operator should know even though the call succeeded. */
  readonly warning?: string | undefined;
}

export interface PowerDriver {
  readonly name: string;
  status(t: BmcTarget, signal?: AbortSignal): Promise<PowerCallInfo & { readonly state: PowerState }>;
  on(t: BmcTarget, signal?: AbortSignal): Promise<PowerCallInfo>;
  /** Hard power off (no OS shutdown). */
  off(t: BmcTarget, signal?: AbortSignal): Promise<PowerCallInfo>;
  /** Off, then on. IPMI leaves a powered-off machine off: callers check status first. */
  cycle(t: BmcTarget, signal?: AbortSignal): Promise<PowerCallInfo>;
  /** Hard reset (no power loss). */
  reset(t: BmcTarget, signal?: AbortSignal): Promise<PowerCallInfo>;
  setNextBoot(t: BmcTarget, device: BootDevice, opts: BootOptions, signal?: AbortSignal): Promise<PowerCallInfo>;
  /** The locator LED: on (for `seconds`, or until turned off when null) or off. */
  identify(t: BmcTarget, on: boolean, seconds: number | null, signal?: AbortSignal): Promise<PowerCallInfo>;
  /** Manufacturer, model, serial, versions and (Redfish) NIC MACs. */
  facts(t: BmcTarget, signal?: AbortSignal): Promise<PowerCallInfo & { readonly facts: BmcFacts }>;
}

/**
 * Why a BMC call failed. `timeout`: no answer within the deadline; `unreachable`: no answer to a
 * request (ipmitool gave up); `auth`: wrong user or password; `cipher`: the BMC accepts none of
 * the cipher suites tried; `rejected`: the BMC answered with an error; `output`: the answer could
 * not be understood; `tool`: ipmitool could not be run; `aborted`: racksmith is stopping.
 */
export const POWER_ERROR_CODES = {
  timeout: 'ERR_BMC_TIMEOUT',
  unreachable: 'ERR_BMC_UNREACHABLE',
  auth: 'ERR_BMC_AUTH',
  cipher: 'ERR_BMC_CIPHER',
  rejected: 'ERR_BMC_REJECTED',
  busy: 'ERR_BMC_BUSY',
  output: 'ERR_BMC_OUTPUT',
  tool: 'ERR_BMC_TOOL',
  aborted: 'ERR_BMC_ABORTED',
  tls: 'ERR_BMC_TLS',
} as const;
export type PowerFailureKind = keyof typeof POWER_ERROR_CODES;
export type PowerErrorCode = (typeof POWER_ERROR_CODES)[PowerFailureKind];

export class PowerError extends Error {
  readonly code: PowerErrorCode;
  readonly kind: PowerFailureKind;
  readonly attempts: number;
  constructor(kind: PowerFailureKind, message: string, attempts: number) {
    super(message);
    this.name = 'PowerError';
    this.kind = kind;
    this.code = POWER_ERROR_CODES[kind];
    this.attempts = attempts;
  }
}
