import { z } from 'zod';
import { MACHINE_STATES } from '../../inventory/lifecycle.js';
import { CLUSTER_STATES, CNIS, CONTAINER_RUNTIMES, KNOWN_POWER_STATES, ROLES, TOKEN_ROLES, UBUNTU_RELEASES } from '../../inventory/model.js';

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
    driver: z.string(),
    address: z.string(),
    port: z.number().int(),
    username: z.string(),
    cipherSuite: z.number().int().nullable(),
    passwordSet: z.boolean(),
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
    state: z.enum(MACHINE_STATES),
    failure: z.object({ from: nullableText, step: nullableText, reason: nullableText }).nullable(),
    lastStep: nullableText,
    arch: nullableText,
    firmware: nullableText,
    vendorClass: nullableText,
    uuid: nullableText,
    hostKeys: z.array(z.string()),
    firstSeen: time.nullable(),
    lastSeen: time.nullable(),
    stateChangedAt: time,
    createdAt: time,
    updatedAt: time,
    powerState: z.enum(KNOWN_POWER_STATES).nullable().describe('what the BMC last said (a status call) or what a power action last did; null: never asked'),
    powerStateAt: time.nullable().describe('when powerState was read or set'),
  }),
);

export const clusterOut = named(
  'Cluster',
  'A cluster and its state',
  z.object({
    name: z.string(),
    ubuntuRelease: z.enum(UBUNTU_RELEASES),
    kubernetesVersion: z.string(),
    containerRuntime: z.enum(CONTAINER_RUNTIMES),
    cni: z.enum(CNIS),
    podSubnet: z.string(),
    serviceSubnet: z.string(),
    controlPlaneEndpoint: nullableText,
    state: z.enum(CLUSTER_STATES),
    machineCount: z.number().int(),
    createdAt: time,
    updatedAt: time,
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
  }),
);

export const bulkUpdateOut = named('BulkUpdateResult', 'Machines changed by one bulk update', z.object({ updated: z.number().int(), machines: z.array(machineOut) }));

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
  z.object({ status: z.enum(['ok', 'failing']), version: z.string(), services: z.record(z.string(), z.looseObject({ state: z.string() })) }),
);

export const machineEventReplyOut = named('MachineReport', 'A machine\u2019s state after its report', z.object({ mac: z.string(), state: z.string() }));

export type MachineOut = z.input<typeof machineOut>;
export type ClusterOut = z.input<typeof clusterOut>;
export type EventOut = z.input<typeof eventOut>;
export type PowerJobOut = z.input<typeof powerJobOut>;
