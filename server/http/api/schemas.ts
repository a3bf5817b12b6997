import { z } from 'zod';
import { parseIPv4 } from '../../lib/ipv4.js';
import { macRefusal, parseMac, type Mac } from '../../lib/mac.js';
import { BOOT_LOADERS, CNIS, CONTAINER_RUNTIMES, MAX_RACK_UNIT, ROLES, UBUNTU_RELEASES } from '../../inventory/model.js';
import { INSTALL_DISK_RULES, INSTALL_METHODS, OS_IDS, installMethodProblem, osOfUbuntuRelease, ubuntuReleaseOf } from '../../inventory/os.js';
import { imageSource } from '../../config/settings.js';
import { INSTALL_DISK_HELP, isInstallDisk } from '../../seeds/install-disk.js';
import { MACHINE_STATES } from '../../inventory/lifecycle.js';
import type { MachineCursor } from '../../inventory/store.js';
import { checkCompatibility } from '../../clusters/compatibility.js';
import { bmcProtocolProblems } from '../../inventory/bmc-protocol.js';
import { apiField } from '../../clusters/changes.js';

/**
 * The API's input shapes, parsed once at the boundary: MACs canonicalised, IPs checked, literals
 * narrowed. Handlers receive only these outputs.
 */

export const macSchema = z
  .string()
  .transform((s, ctx): Mac => {
    const mac = parseMac(s);
    if (mac === null) {
      ctx.addIssue({ code: 'custom', message: `"${s.slice(0, 40)}" is not a MAC address (accepted: 52:54:00:aa:bb:cc, 52-54-00-aa-bb-cc, 5254.00aa.bbcc, 525400aabbcc)` });
      return z.NEVER;
    }
    const refusal = macRefusal(mac);
    if (refusal !== null) {
      ctx.addIssue({ code: 'custom', message: `${mac}: ${refusal}` });
      return z.NEVER;
    }
    return mac;
  });

export const ipv4Schema = z.string().refine((s) => parseIPv4(s) !== null, { message: 'expected an IPv4 address such as 10.0.0.11' });

/** RFC 1123 host name label: what kubeadm accepts as a node name. */
export const hostnameSchema = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'expected a host name: lower-case letters, digits and inner hyphens, at most 63 characters');

export const clusterNameSchema = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/, 'expected a cluster name: lower-case letters, digits and inner hyphens, at most 40 characters');

export const rackSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'expected a rack name: letters, digits, ".", "_" or "-", at most 64 characters');

/** Rack unit: 1 is the bottom slot. */
export const unitSchema = z.number().int(`expected a whole rack unit from 1 to ${MAX_RACK_UNIT}`).min(1, `expected a rack unit from 1 to ${MAX_RACK_UNIT}`).max(MAX_RACK_UNIT, `expected a rack unit from 1 to ${MAX_RACK_UNIT}`);

const cidrSchema = z.string().refine((s) => {
  const [ip, bits, ...rest] = s.split('/');
  return rest.length === 0 && ip !== undefined && parseIPv4(ip) !== null && bits !== undefined && /^\d{1,2}$/.test(bits) && Number(bits) <= 32;
}, 'expected an IPv4 CIDR such as 10.244.0.0/16');

const endpointSchema = z
  .string()
  .regex(/^[A-Za-z0-9.-]{1,253}:\d{1,5}$/, 'expected host:port such as 10.0.0.10:6443')
  .refine((s) => Number(s.split(':')[1]) <= 65535, 'port out of range');

/** Kubernetes versions as kubeadm writes them, stored without the leading "v". */
export const kubernetesVersionSchema = z
  .string()
  .regex(/^v?1\.(1[89]|[2-9]\d)\.\d{1,3}$/, 'expected a Kubernetes version from 1.18.0 on, such as 1.28.4')
  .transform((s) => s.replace(/^v/, ''));

export function kubernetesMinor(version: string): number {
  return Number(version.split('.')[1]);
}

const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 as 64 lower-case hex digits');
const imageUrlSchema = imageSource;

export const installDiskSchema = z.string().refine(isInstallDisk, INSTALL_DISK_HELP);

export const newClusterSchema = z
  .object({
    name: clusterNameSchema,
    os: z.enum(OS_IDS).optional(),
    ubuntuRelease: z.enum(UBUNTU_RELEASES).optional(),
    installMethod: z.enum(INSTALL_METHODS).optional(),
    installDiskRule: z.enum(INSTALL_DISK_RULES).optional(),
    imageUrl: imageUrlSchema.optional(),
    imageSha256: sha256Schema.optional(),
    kubernetesVersion: kubernetesVersionSchema,
    containerRuntime: z.enum(CONTAINER_RUNTIMES),
    cni: z.enum(CNIS),
    podSubnet: cidrSchema.optional(),
    serviceSubnet: cidrSchema.optional(),
    controlPlaneEndpoint: endpointSchema.optional(),
    vip: ipv4Schema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.vip && c.controlPlaneEndpoint && c.controlPlaneEndpoint !== `${c.vip}:6443`) {
      ctx.addIssue({ code: 'custom', path: ['controlPlaneEndpoint'], message: `with a vip the control-plane endpoint is ${c.vip}:6443; leave controlPlaneEndpoint out` });
    }
    if (!c.os && !c.ubuntuRelease) ctx.addIssue({ code: 'custom', path: ['os'], message: `give the cluster's os (${OS_IDS.join(', ')})` });
    if (c.os && c.ubuntuRelease && ubuntuReleaseOf(c.os) !== c.ubuntuRelease) {
      ctx.addIssue({ code: 'custom', path: ['ubuntuRelease'], message: `ubuntuRelease ${c.ubuntuRelease} contradicts os ${c.os}: give one of them` });
    }
    const os = c.os ?? (c.ubuntuRelease ? osOfUbuntuRelease(c.ubuntuRelease) : null);
    const problem = os && c.installMethod ? installMethodProblem(os, c.installMethod) : null;
    if (problem) ctx.addIssue({ code: 'custom', path: ['installMethod'], message: problem });
    if (c.imageSha256 && !c.imageUrl) ctx.addIssue({ code: 'custom', path: ['imageSha256'], message: 'imageSha256 pins the cluster\'s imageUrl: give both' });
    // One compatibility table (server/clusters/compatibility.ts): Kubernetes minor × OS × runtime × CNI.
    if (os) {
      const compat = checkCompatibility({ os, kubernetesVersion: c.kubernetesVersion, containerRuntime: c.containerRuntime, cni: c.cni });
      if (!compat.ok) ctx.addIssue({ code: 'custom', path: [apiField(compat.field, c.os ? 'os' : 'ubuntuRelease')], message: compat.message });
    }
  });

export const clusterPatchSchema = z
  .object({
    os: z.enum(OS_IDS).optional(),
    ubuntuRelease: z.enum(UBUNTU_RELEASES).optional(),
    installMethod: z.enum(INSTALL_METHODS).optional(),
    installDiskRule: z.enum(INSTALL_DISK_RULES).optional(),
    imageUrl: imageUrlSchema.nullable().optional(),
    imageSha256: sha256Schema.nullable().optional(),
    kubernetesVersion: kubernetesVersionSchema.optional(),
    containerRuntime: z.enum(CONTAINER_RUNTIMES).optional(),
    cni: z.enum(CNIS).optional(),
    podSubnet: cidrSchema.nullable().optional(),
    serviceSubnet: cidrSchema.nullable().optional(),
    controlPlaneEndpoint: endpointSchema.nullable().optional(),
    vip: ipv4Schema.nullable().optional(),
  })
  .strict();

const bmcHost = z.string().regex(/^[A-Za-z0-9.:-]{1,253}$/, 'expected a BMC address (IP or host name)');

const bmcFields = {
  driver: z.enum(['ipmi', 'redfish']),
  // A Redfish BMC may be given as a URL (https://bmc1, https://[fd00::5]:8443, http://… for a lab BMC).
  address: z.union([bmcHost, z.string().regex(/^https?:\/\/[A-Za-z0-9.:[\]-]{1,253}(\/(redfish(\/v1)?\/?)?)?$/, 'expected a BMC address (IP, host name or https://host[:port])')]),
  port: z.number().int().min(1).max(65535).optional(),
  // IPMI 2.0 limits user names to 16 bytes and passwords to 20 (checked below); Redfish BMCs allow more.
  username: z.string().min(1).max(64),
  password: z.string().min(1).max(128),
  cipherSuite: z.number().int().min(0).max(17).optional(),
  systemId: z.string().regex(/^[A-Za-z0-9._~-]{1,64}$/, 'expected a Redfish system id (as in /redfish/v1/Systems/<id>)').optional(),
  verifyTls: z.boolean().optional().describe('Redfish: check the BMC certificate against the system CAs (default true)'),
  tlsFingerprint: z
    .string()
    .regex(/^(sha256[:=])?([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$/, 'expected the SHA-256 fingerprint of the BMC certificate (64 hex digits, colons allowed)')
    .optional()
    .describe('Redfish: accept exactly this certificate (a BMC self-signed one)'),
  solCapture: z.boolean().optional().describe('capture the serial console (IPMI SOL) while the machine installs; absent: the rack setting'),
};

function checkBmc(b: { driver?: string | undefined; address?: string | undefined; username?: string | undefined; password?: string | undefined; cipherSuite?: number | null | undefined; systemId?: string | null | undefined; verifyTls?: boolean | undefined; tlsFingerprint?: string | null | undefined; solCapture?: boolean | null | undefined }, ctx: z.RefinementCtx): void {
  const issue = (path: string, message: string): void => ctx.addIssue({ code: 'custom', path: [path], message });
  // A patch without a driver keeps the stored one; its fields are checked against it by the store's merge.
  if (b.driver === 'ipmi') {
    if (b.address !== undefined && /^https?:/.test(b.address)) issue('address', 'an IPMI BMC address is a host or IP, not a URL');
    if (b.username !== undefined && b.username.length > 16) issue('username', 'IPMI user names are at most 16 bytes');
    if (b.password !== undefined && b.password.length > 20) issue('password', 'IPMI passwords are at most 20 bytes');
  }
  if (b.driver !== undefined) for (const p of bmcProtocolProblems(b.driver, b)) issue(p.field, p.message);
}

export const newBmcSchema = z.object(bmcFields).strict().superRefine(checkBmc);

/**
 * A BMC patch merges into the stored BMC: an absent field keeps its value; `port`, `cipherSuite`,
 * `systemId`, `tlsFingerprint` or `solCapture` set to null goes back to the default. A machine
 * without a BMC needs address, user name and password (the store says which is missing).
 */
export const bmcPatchSchema = z
  .object({
    ...bmcFields,
    driver: bmcFields.driver.optional(),
    address: bmcFields.address.optional(),
    username: bmcFields.username.optional(),
    password: bmcFields.password.optional(),
    port: bmcFields.port.unwrap().nullable().optional(),
    cipherSuite: bmcFields.cipherSuite.unwrap().nullable().optional(),
    systemId: bmcFields.systemId.unwrap().nullable().optional(),
    tlsFingerprint: bmcFields.tlsFingerprint.unwrap().nullable().optional(),
    solCapture: bmcFields.solCapture.unwrap().nullable().optional(),
  })
  .strict()
  .superRefine(checkBmc);

export const newMachineSchema = z
  .object({
    mac: macSchema,
    hostname: hostnameSchema,
    role: z.enum(ROLES),
    cluster: clusterNameSchema,
    ip: ipv4Schema.optional(),
    rack: rackSchema.optional(),
    unit: unitSchema.optional(),
    bmc: newBmcSchema.optional(),
    installDisk: installDiskSchema.optional(),
    bootLoader: z.enum(BOOT_LOADERS).nullable().optional(),
    secureBoot: z.boolean().nullable().optional(),
  })
  .strict();

export const machinePatchSchema = z
  .object({
    hostname: hostnameSchema.nullable().optional(),
    role: z.enum(ROLES).nullable().optional(),
    cluster: clusterNameSchema.nullable().optional(),
    ip: ipv4Schema.nullable().optional(),
    rack: rackSchema.nullable().optional(),
    unit: unitSchema.nullable().optional(),
    bmc: bmcPatchSchema.nullable().optional(),
    installDisk: installDiskSchema.nullable().optional(),
    bootLoader: z.enum(BOOT_LOADERS).nullable().optional(),
    secureBoot: z.boolean().nullable().optional(),
  })
  .strict();

/** The same change for several machines at once (the console's bulk "assign"), all or none. */
export const bulkMachinePatchSchema = z
  .object({
    macs: z.array(macSchema).min(1, 'select at least one machine').max(10_000),
    patch: machinePatchSchema.pick({ role: true, cluster: true, rack: true }).refine((p) => Object.keys(p).length > 0, 'give role, cluster or rack'),
  })
  .strict();

const single = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => v, schema.optional()).refine((v) => !Array.isArray(v), 'give this parameter once');

/**
 * The opaque `after` cursor of machine list pages: base64url of `[rack, hostname, mac]`, the
 * last machine of the previous page (see MachineCursor). Clients copy it from the Link header.
 */
export function encodeMachineCursor(c: MachineCursor): string {
  return Buffer.from(JSON.stringify([c.rack, c.hostname, c.mac])).toString('base64url');
}

const machineCursorSchema = z.string().transform((s, ctx): MachineCursor => {
  let parsed: unknown;
  try {
    parsed = /^[A-Za-z0-9_-]{1,400}$/.test(s) ? JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) : undefined;
  } catch {
    parsed = undefined;
  }
  const isText = (v: unknown): v is string | null => v === null || (typeof v === 'string' && v.length <= 253);
  if (Array.isArray(parsed) && parsed.length === 3 && isText(parsed[0]) && isText(parsed[1]) && typeof parsed[2] === 'string') {
    const mac = parseMac(parsed[2]);
    if (mac) return { rack: parsed[0], hostname: parsed[1], mac };
  }
  ctx.addIssue({ code: 'custom', message: 'expected the cursor from the previous page\'s Link header (rel="next")' });
  return z.NEVER;
});

export const MAX_PAGE = 10_000;

export const machineQuerySchema = z
  .object({
    cluster: single(clusterNameSchema),
    role: single(z.enum(ROLES)),
    state: single(z.enum(MACHINE_STATES)),
    rack: single(rackSchema),
    limit: single(z.string().regex(/^\d{1,5}$/, `expected a number from 1 to ${MAX_PAGE}`).transform(Number).refine((n) => n >= 1 && n <= MAX_PAGE, `expected a number from 1 to ${MAX_PAGE}`)),
    after: single(machineCursorSchema),
  })
  .strict();

export const eventQuerySchema = z
  .object({
    after: single(z.string().regex(/^\d{1,15}$/, 'expected an event id').transform(Number)),
    limit: single(z.string().regex(/^\d{1,5}$/, 'expected a number from 1 to 10000').transform(Number).refine((n) => n >= 1 && n <= 10_000, 'expected a number from 1 to 10000')),
  })
  .strict();

export const emptyQuerySchema = z.object({}).strict();

/** `DELETE /machines/{mac}?force=true`: take a node that no longer answers out of its cluster anyway. */
export const deleteMachineQuerySchema = z
  .object({ force: z.enum(['true', 'false']).optional().transform((v) => v === 'true') })
  .strict();

/** `POST /machines/import?mode=upsert`: a re-imported sheet updates the machines it knows (by MAC). */
export const importQuerySchema = z.object({ mode: single(z.enum(['create', 'upsert'])) }).strict();

const eventIdQuery = z.string().regex(/^\d{1,15}$/, 'expected an event id').transform(Number);
/** `GET /events`: the site's event log, or a cluster's or machine's, newest `limit` unless `after` is given. */
export const siteEventQuerySchema = z
  .object({
    cluster: single(clusterNameSchema),
    mac: single(macSchema),
    type: single(z.string().regex(/^[a-z][a-z0-9.-]{0,63}$/, 'expected an event type such as power or dhcp.discover')),
    after: single(eventIdQuery),
    before: single(eventIdQuery),
    limit: single(z.string().regex(/^\d{1,5}$/, 'expected a number from 1 to 10000').transform(Number).refine((n) => n >= 1 && n <= 10_000, 'expected a number from 1 to 10000')),
  })
  .strict();

/** The console's sign-in form. */
export const sessionSchema = z.object({ token: z.string().min(1, 'paste an API token').max(200) }).strict();
