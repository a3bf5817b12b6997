import { z } from 'zod';
import { MACHINE_STATES } from '../../inventory/lifecycle.js';
import { INSTALL_DISK_RULES, INSTALL_METHODS, OS_IDS } from '../../inventory/os.js';
import { BMC_DRIVER_NAMES, BOOT_LOADERS, CLUSTER_STATES, CNIS, CONTAINER_RUNTIMES, KNOWN_POWER_STATES, ROLES, SECURE_BOOT_SEEN, TOKEN_ROLES, UBUNTU_RELEASES, UPGRADE_STATES } from '../../inventory/model.js';

/**
 * The API's answers as zod schemas: the present*() functions return these types (so a field
 * added to an answer is a compile error until it is described here), the OpenAPI document is
 * generated from them, and the API tests validate real answers against that document.
 * Each named schema is a component of the document (`#/components/schemas/<id>`).
 */
export const responseSchemas = z.registry<{ id: string; description?: string }>();

const named = <T extends z.ZodType>(id: string, description: string, schema: T): T => {
  responseSchemas.add(schema, { id, description });
  return schema;
};

const time = z.string().describe('ISO 8601 UTC');
const nullableText = z.string().nullable();

export const errorDetailOut = named(
  'ErrorDetail',
  'One finding of several (a bad CSV cell): where, what, the value as given (never a secret) and how to fix it',
  z.object({
    message: z.string(),
    field: z.string().optional(),
    row: z.number().int().optional(),
    value: z.string().optional(),
    hint: z.string().optional(),
  }),
);

export const errorOut = named(
  'Error',
  'Every error: a machine-readable code, a message for people, and the input field it is about',
  z.object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      field: z.string().optional(),
      details: z.array(errorDetailOut).optional().describe('several findings at once, e.g. every bad cell of a CSV import'),
    }),
  }),
);

export const bmcOut = named(
  'Bmc',
  'A BMC as stored; the password is write-only',
  z.object({
    driver: z.enum(BMC_DRIVER_NAMES),
    address: z.string(),
    port: z.number().int().nullable().describe('null for Redfish: from the https:// address, else 443'),
    username: z.string(),
    cipherSuite: z.number().int().nullable().describe('IPMI lanplus cipher suite; null: 17, then 3'),
    passwordSet: z.boolean(),
    systemId: z.string().nullable().optional().describe('Redfish: the ComputerSystem id; null: the only one'),
    verifyTls: z.boolean().optional().describe('Redfish: check the certificate against the system CAs'),
    tlsFingerprint: z.string().nullable().optional().describe('Redfish: SHA-256 of the one certificate accepted'),
    solCapture: z.boolean().nullable().describe('serial console capture during installs (IPMI SOL); null: the rack setting'),
  }),
);

export const bmcFactsOut = named(
  'BmcFacts',
  'What the BMC reported about its machine at the last status call that read it',
  z.object({
    source: z.enum(BMC_DRIVER_NAMES),
    manufacturer: nullableText,
    model: nullableText,
    serial: nullableText,
    biosVersion: nullableText,
    firmwareVersion: nullableText,
    nics: z.array(z.string()).readonly().nullable().describe('the system NIC MACs (Redfish); null when the BMC does not list them'),
    collectedAt: time,
    macReported: z.boolean().nullable().describe('false: the BMC does not list this machine MAC among its NICs (a swapped cable, a typo)'),
  }),
);

export const machineOut = named(
  'Machine',
  'A machine: placement, lifecycle state, what the boot path learnt, and the last known power state',
  z.object({
    mac: z.string(),
    hostname: nullableText,
    role: z.enum(ROLES).nullable(),
    cluster: nullableText,
    ip: nullableText,
    rack: nullableText,
    unit: z.number().int().nullable().describe('rack unit, 1 = the bottom slot'),
    bmc: bmcOut.nullable(),
    bmcFacts: bmcFactsOut.nullable(),
    state: z.enum(MACHINE_STATES),
    failure: z.object({ from: nullableText, step: nullableText, reason: nullableText }).nullable(),
    lastStep: nullableText,
    arch: nullableText,
    firmware: nullableText,
    vendorClass: nullableText,
    uuid: nullableText,
    bootLoader: z.enum(BOOT_LOADERS).nullable().describe('the machine boot loader choice; null: the site default'),
    secureBoot: z.boolean().nullable().describe('the operator mark: Secure Boot on, off, or not known (null)'),
    secureBootSeen: z.enum(SECURE_BOOT_SEEN).nullable().describe('what racksmith last saw: GRUB lockdown (enforced) or iPXE on EFI (off)'),
    boot: z.object({
      lastLoader: z.enum(['ipxe', 'shim-grub']).nullable(),
      bootfile: nullableText.describe('the last boot binary served'),
      bootfileAt: time.nullable(),
      loaderAt: time.nullable().describe('when a boot loader last asked for its script'),
      stuck: z.object({ since: time, bootfile: z.string(), message: z.string() }).nullable().describe('a bootfile served and no loader after it'),
    }),
    hostKeys: z.array(z.string()),
    installDisk: nullableText.describe('the admin choice of install disk (/dev/…, /dev/disk/by-id/…, serial:…); null: the cluster rule picks'),
    installedDisk: z
      .object({ name: z.string(), path: z.string(), kind: z.string(), sizeBytes: z.number(), serial: nullableText, model: nullableText, chosenBy: nullableText, reportedAt: time })
      .nullable()
      .describe('the disk the installer reported installing to'),
    firstSeen: time.nullable(),
    lastSeen: time.nullable(),
    stateChangedAt: time,
    createdAt: time,
    updatedAt: time,
    powerState: z.enum(KNOWN_POWER_STATES).nullable().describe('what the BMC last said (a status call) or what a power action last did; null: never asked'),
    powerStateAt: time.nullable().describe('when powerState was read or set'),
  }),
);

export const upgradeOut = named(
  'Upgrade',
  'A rolling upgrade by reimage, under way or last run; in a cluster view with each node progress',
  z.object({
    id: z.string(),
    from: z.string(),
    to: z.string(),
    state: z.enum(UPGRADE_STATES),
    maxUnavailable: z.number().int(),
    requestedAt: time,
    updatedAt: time,
    reason: nullableText,
    controlPlaneMoved: z.boolean(),
    nodes: z.record(z.string(), z.string()).optional().describe('node name to its upgrade state (in GET /clusters/{name})'),
  }),
);

export const clusterOut = named(
  'Cluster',
  'A cluster and its state',
  z.object({
    name: z.string(),
    os: z.enum(OS_IDS),
    ubuntuRelease: z.enum(UBUNTU_RELEASES).nullable().describe('the Ubuntu release of an Ubuntu cluster (null for Debian)'),
    installMethod: z.enum(INSTALL_METHODS),
    installDiskRule: z.enum(INSTALL_DISK_RULES),
    imageUrl: nullableText,
    imageSha256: nullableText,
    kubernetesVersion: z.string(),
    containerRuntime: z.enum(CONTAINER_RUNTIMES),
    cni: z.enum(CNIS),
    podSubnet: z.string(),
    serviceSubnet: z.string(),
    controlPlaneEndpoint: nullableText,
    vip: nullableText.describe('the API virtual IP a pair of load balancers shares (keepalived)'),
    state: z.enum(CLUSTER_STATES),
    machineCount: z.number().int(),
    warnings: z.array(z.string()).readonly().describe('allowed but worth knowing (an even number of control-plane nodes)'),
    createdAt: time,
    updatedAt: time,
    upgrade: upgradeOut.optional(),
  }),
);

export const stepOut = named(
  'OrchestrationStep',
  'One step of a cluster bootstrap (kubeadm init, a join, the CNI…) with its times and output',
  z.looseObject({
    id: z.string(),
    kind: z.string(),
    machine: nullableText,
    mac: nullableText,
    state: z.string(),
    attempts: z.number().int(),
    startedAt: time.nullable(),
    endedAt: time.nullable(),
    seconds: z.number().nullable(),
    output: z.array(z.string()),
    error: nullableText,
  }),
);

export const clusterDetailOut = named(
  'ClusterDetail',
  'A cluster with its machines, orchestration steps, and what its bootstrap waits for',
  clusterOut.extend({
    machines: z.array(machineOut),
    steps: z.array(stepOut),
    orchestration: z
      .looseObject({
        waiting: z.array(z.string()).describe('why the bootstrap is not moving, in an operator\u2019s words'),
        next: z.array(z.string()),
        running: z.array(z.string()),
        lock: z.object({ holder: z.string(), expiresAt: time }).nullable(),
      })
      .optional(),
  }),
);

export const eventOut = named(
  'Event',
  'One entry of the inventory\u2019s event log',
  z.object({
    id: z.number().int(),
    at: time,
    mac: nullableText,
    cluster: nullableText,
    type: z.string().describe('state, dhcp.*, tftp.*, http.*, installer.event, phone-home, power, rack.power, power.job, reimage, orchestration*, machine.*, cluster.*'),
    source: nullableText,
    message: z.string(),
    data: z.record(z.string(), z.unknown()).nullable(),
  }),
);

export const importOut = named(
  'ImportResult',
  'What a CSV import did',
  z.object({
    imported: z.number().int().describe('machines created or updated'),
    created: z.number().int(),
    updated: z.number().int(),
    unchanged: z.number().int(),
    delimiter: z.string().describe('the cell separator the sheet was read with'),
    machines: z.array(machineOut),
    warnings: z.array(z.string()).describe('what the clusters the rows land in warn about'),
  }),
);

export const bulkUpdateOut = named('BulkUpdateResult', 'Machines changed by one bulk update', z.object({ updated: z.number().int(), machines: z.array(machineOut), warnings: z.array(z.string()) }));

export const rackOut = named(
  'Rack',
  'A rack: its machines counted by state',
  z.object({ name: z.string(), machines: z.number().int(), states: z.record(z.string(), z.number().int()) }),
);

export const powerResultOut = named(
  'PowerResult',
  'What one BMC call did',
  z.object({
    mac: z.string(),
    hostname: nullableText,
    action: z.string(),
    result: z.string(),
    state: z.enum(KNOWN_POWER_STATES).optional(),
    attempts: z.number().int(),
    cipherSuite: z.number().int().nullable(),
    ms: z.number(),
    warning: z.string().optional(),
  }),
);

export const powerJobOut = named(
  'PowerJob',
  'A power job over a rack or a selection of machines: progress and per-machine results',
  z.object({
    id: z.string(),
    rack: nullableText.describe('the rack, or null for a selection of machines'),
    action: z.string(),
    concurrency: z.number().int(),
    delaySeconds: z.number(),
    state: z.enum(['running', 'done', 'cancelled']),
    createdAt: time,
    finishedAt: time.nullable(),
    counts: z.record(z.string(), z.number().int()),
    machines: z.array(
      z.object({
        mac: z.string(),
        hostname: nullableText,
        state: z.enum(['queued', 'running', 'ok', 'failed', 'skipped', 'cancelled']),
        result: nullableText,
        error: z.object({ code: z.string(), message: z.string() }).nullable(),
        startedAt: time.nullable(),
        finishedAt: time.nullable(),
      }),
    ),
  }),
);

export const reimageOut = named(
  'ReimageAccepted',
  'A reimage that was accepted; its progress is in the machine\u2019s events (type reimage)',
  z.looseObject({ reimage: z.string(), mac: z.string(), hostname: nullableText, state: z.string(), removal: z.enum(['pending', 'not-needed']) }),
);

export const retryOut = named('RetryResult', 'What a cluster retry reset', z.object({ cluster: z.string(), retried: z.object({ machines: z.array(z.string()), steps: z.array(z.string()) }) }));

export const whoOut = named('Principal', 'A token\u2019s name and role', z.object({ name: z.string(), role: z.enum(TOKEN_ROLES) }));

export const healthOut = named(
  'Health',
  'Each service\u2019s state',
  z.object({
    status: z.enum(['ok', 'starting', 'degraded', 'failing']),
    version: z.string(),
    services: z.record(z.string(), z.looseObject({ state: z.string() })),
    database: z
      .object({ engine: z.enum(['sqlite', 'postgres']), state: z.enum(['ok', 'unavailable']), since: z.string().nullable(), reason: z.string().nullable() })
      .optional()
      .describe('whether the store answers; "unavailable" (PostgreSQL restarting or failing over) makes the status "degraded"'),
  }),
);

export const machineEventReplyOut = named('MachineReport', 'A machine\u2019s state after its report', z.object({ mac: z.string(), state: z.string() }));

export type MachineOut = z.input<typeof machineOut>;
export type ClusterOut = z.input<typeof clusterOut>;
export type EventOut = z.input<typeof eventOut>;
export type PowerJobOut = z.input<typeof powerJobOut>;

/** POST /machines and PATCH /machines/{mac} answer the machine and what its cluster now warns about. */
export const machineWithWarningsOut = named(
  'MachineWithWarnings',
  'A machine as stored, with the warnings of the cluster it is placed in',
  machineOut.extend({ warnings: z.array(z.string()).describe('allowed but worth knowing (an even number of control-plane nodes)') }),
);

export const removalOut = named(
  'NodeRemoval',
  'A node leaving its cluster before its record is deleted (drain, etcd member, Node object, load balancers)',
  z.object({
    removal: z.literal('pending'),
    request: z.string(),
    step: z.string().describe('the orchestration step that removes it'),
    mac: z.string(),
    hostname: nullableText,
    cluster: z.string(),
    force: z.boolean(),
    events: z.string().describe('where to follow it'),
  }),
);

export const identifyOut = named(
  'IdentifyResult',
  'What a locator LED call did',
  z.object({
    mac: z.string(),
    hostname: nullableText,
    on: z.boolean(),
    seconds: z.number().int().nullable(),
    attempts: z.number().int(),
    cipherSuite: z.number().int().nullable(),
    ms: z.number(),
    warning: z.string().optional(),
  }),
);

export const consoleOut = named(
  'SerialConsole',
  'The serial console racksmith captured over IPMI SOL while the machine installs',
  z.object({
    mac: z.string(),
    attached: z.boolean(),
    state: z.string().describe('the capture state (attached, detached, off, …)'),
    reason: nullableText,
    lines: z.array(z.object({ seq: z.number().int(), text: z.string() })),
  }),
);

export const preflightOut = named(
  'PreflightReport',
  'Every upstream a cluster\u2019s seeds use, checked from racksmith\u2019s host',
  z.object({
    cluster: z.string(),
    ok: z.boolean().describe('false when a check failed'),
    checkedAt: time,
    checks: z.array(
      z.object({
        id: z.string(),
        title: z.string(),
        url: nullableText,
        state: z.enum(['ok', 'failed', 'skipped']),
        status: z.number().int().nullable().describe('the HTTP status of the answer that decided it'),
        detail: z.string(),
        ms: z.number(),
      }),
    ),
  }),
);

export const upgradeReplyOut = named('UpgradeReply', 'A cluster\u2019s rolling upgrade as recorded', z.object({ cluster: z.string(), upgrade: upgradeOut }));
