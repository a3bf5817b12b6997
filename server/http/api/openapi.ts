import { z } from 'zod';
import type { TokenRole } from '../../inventory/model.js';
import { BUILD_ARCHES, PLATFORMS } from '../../boot/query.js';
import { SEED_FILES } from '../../seeds/render.js';
import {
  bulkMachinePatchSchema,
  clusterPatchSchema,
  deleteMachineQuerySchema,
  eventQuerySchema,
  importQuerySchema,
  machinePatchSchema,
  machineQuerySchema,
  newClusterSchema,
  newMachineSchema,
  sessionSchema,
  siteEventQuerySchema,
} from './schemas.js';
import { identifySchema, machinePowerSchema, powerJobSchema, rackPowerSchema, reimageSchema } from './power.js';
import { consoleActionSchema } from './serial-console.js';
import { upgradeRequestSchema } from './orchestration-routes.js';
import {
  bulkUpdateOut,
  clusterDetailOut,
  consoleOut,
  identifyOut,
  machineWithWarningsOut,
  preflightOut,
  removalOut,
  upgradeReplyOut,
  clusterOut,
  errorOut,
  eventOut,
  healthOut,
  importOut,
  machineEventReplyOut,
  machineOut,
  powerJobOut,
  powerResultOut,
  rackOut,
  reimageOut,
  responseSchemas,
  retryOut,
  whoOut,
} from './responses.js';
import { streamQuerySchema } from '../event-stream.js';

/**
 * The OpenAPI 3.1 document of everything racksmith serves over HTTP: the REST API, the event
 * stream, /healthz and /metrics, and the routes machines use while they boot. Request schemas are
 * the zod schemas the handlers parse with; answers are the zod schemas the present*() functions
 * are typed by (responses.ts); zod 4 turns both into JSON Schema 2020-12, which OpenAPI 3.1 uses
 * as it is (docs/decisions/2101). A test validates the document with an OpenAPI validator and
 * checks that every route the express app registers is here, and nothing else.
 */

type Json = Record<string, unknown>;
type Schema = z.ZodType | Json;

interface Operation {
  readonly method: 'get' | 'post' | 'patch' | 'delete';
  /** OpenAPI form, from the root: `/api/v1/machines/{mac}`. */
  readonly path: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tag: 'clusters' | 'machines' | 'power' | 'events' | 'session' | 'service' | 'boot path';
  /** The least token role, `none` for routes without a token, `metrics` for the optional metrics token. */
  readonly auth: TokenRole | 'none' | 'metrics';
  readonly pathParams?: Readonly<Record<string, { readonly schema: Schema; readonly description?: string }>>;
  readonly query?: z.ZodObject | Readonly<Record<string, Schema>>;
  readonly body?: { readonly schema: Schema; readonly type?: string; readonly required?: boolean; readonly example?: string };
  /** Answers other than errors: status → description, schema (JSON by default) and content type. */
  readonly ok: Readonly<Record<number, { readonly description: string; readonly schema?: Schema; readonly type?: string; readonly headers?: Json }>>;
  /** Error statuses besides those implied (400 with input, 401/403 with a token role). */
  readonly errors?: readonly number[];
}

const ERROR_TEXT: Record<number, string> = {
  400: 'bad input; `error.field` names it',
  401: 'no token, or an unknown or revoked one',
  403: 'the token\u2019s role is too low (or a cookie-signed write without X-Requested-With)',
  404: 'no such resource',
  409: 'a conflict: a duplicate, or a state change that is not allowed',
  413: 'the body is too large',
  415: 'the body is not of the type this route takes',
  502: 'the BMC answered with an error (ERR_BMC_*)',
  503: 'racksmith is stopping',
  504: 'the BMC did not answer in time (ERR_BMC_TIMEOUT, ERR_BMC_UNREACHABLE)',
};

const mac = { schema: { type: 'string', description: 'MAC in any common form: 52:54:00:aa:bb:cc, 52-54-00-aa-bb-cc, 5254.00aa.bbcc, 525400aabbcc' } };
const clusterName = { schema: { type: 'string' } };
const rack = { schema: { type: 'string' } };
const jobId = { schema: { type: 'string', pattern: '^[0-9a-f]{12}$' } };
const seedToken = { schema: { type: 'string' }, description: 'the machine\u2019s seed token, from its boot script' };
const text = (type: string, description: string): { description: string; schema: Json; type: string } => ({ description, schema: { type: 'string' }, type });

export const OPERATIONS: readonly Operation[] = [
  // ── service ────────────────────────────────────────────────────────────────
  { method: 'get', path: '/healthz', operationId: 'health', tag: 'service', auth: 'none', summary: 'Each service\u2019s state and the database\u2019s; 503 while starting, when one has failed, or while the database does not answer', ok: { 200: { description: 'serving', schema: healthOut } }, errors: [503] },
  {
    method: 'get',
    path: '/metrics',
    operationId: 'metrics',
    tag: 'service',
    auth: 'metrics',
    summary: 'Prometheus metrics (text format); open unless RACKSMITH_METRICS_TOKEN is set',
    ok: { 200: text('text/plain', 'Prometheus text exposition format 0.0.4') },
    errors: [401],
  },
  { method: 'get', path: '/api/v1/openapi.json', operationId: 'openApi', tag: 'service', auth: 'none', summary: 'This document', ok: { 200: { description: 'OpenAPI 3.1 document', schema: { type: 'object' } } } },
  { method: 'get', path: '/', operationId: 'console', tag: 'service', auth: 'none', summary: 'The web console (one HTML page; its scripts and stylesheet are under /console/)', ok: { 200: text('text/html', 'the console page') } },
  { method: 'get', path: '/api/v1/ssh-key', operationId: 'sshKey', tag: 'service', auth: 'viewer', summary: 'racksmith\u2019s SSH public key (the one the seeds install)', ok: { 200: text('text/plain', 'OpenSSH public key') } },

  // ── session ────────────────────────────────────────────────────────────────
  {
    method: 'post',
    path: '/api/v1/session',
    operationId: 'signIn',
    tag: 'session',
    auth: 'none',
    summary: 'The web console\u2019s sign-in: checks an API token and sets it as an HttpOnly, SameSite=Strict cookie',
    body: { schema: sessionSchema },
    ok: { 200: { description: 'the token\u2019s name and role', schema: whoOut } },
    errors: [401, 415],
  },
  { method: 'delete', path: '/api/v1/session', operationId: 'signOut', tag: 'session', auth: 'none', summary: 'Sign out: clears the cookie', ok: { 204: { description: 'signed out' } } },
  { method: 'get', path: '/api/v1/whoami', operationId: 'whoami', tag: 'session', auth: 'viewer', summary: 'The caller\u2019s token name and role', ok: { 200: { description: 'name and role', schema: whoOut } } },

  // ── clusters ───────────────────────────────────────────────────────────────
  { method: 'get', path: '/api/v1/clusters', operationId: 'listClusters', tag: 'clusters', auth: 'viewer', summary: 'List clusters', ok: { 200: { description: 'every cluster', schema: z.array(clusterOut) } } },
  {
    method: 'post',
    path: '/api/v1/clusters',
    operationId: 'createCluster',
    tag: 'clusters',
    auth: 'admin',
    summary: 'Create a cluster',
    body: { schema: newClusterSchema },
    ok: { 201: { description: 'the cluster', schema: clusterOut, headers: { Location: { schema: { type: 'string' } } } } },
    errors: [409, 415],
  },
  {
    method: 'get',
    path: '/api/v1/clusters/{name}',
    operationId: 'getCluster',
    tag: 'clusters',
    auth: 'viewer',
    summary: 'A cluster with its machines, state, orchestration steps and what its bootstrap waits for',
    pathParams: { name: clusterName },
    ok: { 200: { description: 'the cluster', schema: clusterDetailOut } },
    errors: [404],
  },
  {
    method: 'patch',
    path: '/api/v1/clusters/{name}',
    operationId: 'updateCluster',
    tag: 'clusters',
    auth: 'admin',
    summary: 'Change a cluster; null puts a subnet or the endpoint back to its default',
    pathParams: { name: clusterName },
    body: { schema: clusterPatchSchema },
    ok: { 200: { description: 'the cluster', schema: clusterOut } },
    errors: [404, 415],
  },
  { method: 'delete', path: '/api/v1/clusters/{name}', operationId: 'deleteCluster', tag: 'clusters', auth: 'admin', summary: 'Delete a cluster without machines', pathParams: { name: clusterName }, ok: { 204: { description: 'deleted' } }, errors: [404, 409] },
  {
    method: 'get',
    path: '/api/v1/clusters/{name}/kubeconfig',
    operationId: 'getKubeconfig',
    tag: 'clusters',
    auth: 'admin',
    summary: 'The cluster\u2019s admin kubeconfig, once kubeadm init has run on its first control node',
    pathParams: { name: clusterName },
    ok: { 200: text('application/yaml', 'admin.conf') },
    errors: [404],
  },
  {
    method: 'post',
    path: '/api/v1/clusters/{name}/retry',
    operationId: 'retryCluster',
    tag: 'clusters',
    auth: 'operator',
    summary: 'Retry what failed in the cluster\u2019s bootstrap: failed machines go back to ready, failed steps run again',
    pathParams: { name: clusterName },
    ok: { 202: { description: 'what was retried', schema: retryOut } },
    errors: [404],
  },
  {
    method: 'post',
    path: '/api/v1/clusters/{name}/preflight',
    operationId: 'preflightCluster',
    tag: 'clusters',
    auth: 'operator',
    summary: 'Check from racksmith\u2019s host every upstream the cluster\u2019s seeds use: OS mirror and suites, installer artifacts, the Kubernetes repository and the pinned versions in it, Docker CE, the CNI manifest, the apt proxy',
    description: 'Also run before a rack power-on of the cluster\u2019s machines (unless force). See docs/preflight.md.',
    pathParams: { name: clusterName },
    ok: { 200: { description: 'the report; ok is false when a check failed', schema: preflightOut } },
    errors: [404],
  },
  {
    method: 'post',
    path: '/api/v1/clusters/{name}/prefetch',
    operationId: 'prefetchCluster',
    tag: 'clusters',
    auth: 'operator',
    summary: 'Cache every installer artifact the cluster\u2019s machines will ask for, with progress',
    description: 'Streams NDJSON: `{"type":"progress","items":[{release, file, state, bytes, total, error}]}` while it runs, then `{"type":"result","ok",…}` (or `{"type":"error",…}`). Joins a download already running.',
    pathParams: { name: clusterName },
    ok: { 200: text('application/x-ndjson', 'progress, then the result, one JSON object per line') },
    errors: [404],
  },
  {
    method: 'post',
    path: '/api/v1/clusters/{name}/upgrade',
    operationId: 'upgradeCluster',
    tag: 'clusters',
    auth: 'admin',
    summary: 'Rolling upgrade by reimage, one minor at a time: preflight, etcd snapshot, the cluster configuration, then control-plane nodes one at a time and workers maxUnavailable at a time',
    description: 'The cluster view (GET /clusters/{name}) shows its progress per node.',
    pathParams: { name: clusterName },
    body: { schema: upgradeRequestSchema },
    ok: { 202: { description: 'the upgrade as recorded', schema: upgradeReplyOut } },
    errors: [404, 409, 415, 503],
  },
  ...(['pause', 'resume', 'abort'] as const).map(
    (a): Operation => ({
      method: 'post',
      path: `/api/v1/clusters/{name}/upgrade/${a}`,
      operationId: `${a}Upgrade`,
      tag: 'clusters',
      auth: 'operator',
      summary:
        a === 'pause'
          ? 'Pause the upgrade: no further node is reimaged; those on their way finish'
          : a === 'resume'
            ? 'Resume a paused or stopped upgrade; what failed is tried again'
            : 'Abort the upgrade: no further node is reimaged; nodes already upgraded stay upgraded',
      pathParams: { name: clusterName },
      body: { schema: z.object({}).strict(), required: false },
      ok: { 200: { description: 'the upgrade', schema: upgradeReplyOut } },
      errors: [404, 409, 415, 503],
    }),
  ),

  // ── machines ───────────────────────────────────────────────────────────────
  {
    method: 'get',
    path: '/api/v1/machines',
    operationId: 'listMachines',
    tag: 'machines',
    auth: 'viewer',
    summary: 'List machines: all of them, or a page with limit/after',
    description: 'In list order: rack, host name, MAC (a missing rack or host name first). With `limit`, a full page has a `Link: <…>; rel="next"` header (RFC 8288).',
    query: machineQuerySchema,
    ok: { 200: { description: 'machines', schema: z.array(machineOut), headers: { Link: { description: 'with limit, on a full page: the next page', schema: { type: 'string' } } } } },
  },
  { method: 'post', path: '/api/v1/machines', operationId: 'createMachine', tag: 'machines', auth: 'admin', summary: 'Add (assign) a machine; 409 ERR_TOPOLOGY when the placement breaks its cluster\u2019s shape', body: { schema: newMachineSchema }, ok: { 201: { description: 'the machine', schema: machineWithWarningsOut } }, errors: [409, 415] },
  {
    method: 'patch',
    path: '/api/v1/machines',
    operationId: 'updateMachines',
    tag: 'machines',
    auth: 'admin',
    summary: 'The same change (role, cluster, rack) for several machines, all or none',
    body: { schema: bulkMachinePatchSchema },
    ok: { 200: { description: 'the machines as changed', schema: bulkUpdateOut } },
    errors: [404, 409, 415],
  },
  {
    method: 'post',
    path: '/api/v1/machines/import',
    operationId: 'importMachines',
    tag: 'machines',
    auth: 'admin',
    summary: 'Import machines from CSV, all rows or none; ?mode=upsert updates the machines the sheet knows by MAC',
    description:
      'Header row: mac,hostname,role,cluster,ip,rack,unit,bmc_address,bmc_username,bmc_password (optionally bmc_port, bmc_cipher_suite), in any order; ' +
      'separated by commas, semicolons, tabs or pipes. A 400 lists every bad cell in `error.details` with its row, column, value (never a password) and a hint.',
    query: importQuerySchema,
    body: { schema: { type: 'string' }, type: 'text/csv', example: 'mac,hostname,role,cluster,ip,rack,unit\n52:54:00:aa:bb:01,cp1,control-plane,lab,10.0.0.11,r1,12\n' },
    ok: { 201: { description: 'what was imported', schema: importOut } },
    errors: [409, 413, 415],
  },
  { method: 'get', path: '/api/v1/machines/{mac}', operationId: 'getMachine', tag: 'machines', auth: 'viewer', summary: 'A machine', pathParams: { mac }, ok: { 200: { description: 'the machine', schema: machineOut } }, errors: [404] },
  {
    method: 'patch',
    path: '/api/v1/machines/{mac}',
    operationId: 'updateMachine',
    tag: 'machines',
    auth: 'admin',
    summary: 'Change a machine; a bmc object merges into the stored one',
    pathParams: { mac },
    body: { schema: machinePatchSchema },
    ok: { 200: { description: 'the machine', schema: machineWithWarningsOut } },
    errors: [404, 409, 415],
  },
  {
    method: 'delete',
    path: '/api/v1/machines/{mac}',
    operationId: 'deleteMachine',
    tag: 'machines',
    auth: 'admin',
    summary: 'Delete a machine. A node of its cluster leaves it first (drain, etcd member, Node object, load balancers): 202, and the record goes once it is out',
    description: '409 ERR_QUORUM when removing a control-plane node would lose etcd quorum; 409 ERR_REIMAGE_IN_PROGRESS while it is being reimaged.',
    pathParams: { mac },
    query: deleteMachineQuerySchema,
    ok: { 202: { description: 'the node leaves its cluster first', schema: removalOut }, 204: { description: 'deleted' } },
    errors: [404, 409],
  },
  {
    method: 'post',
    path: '/api/v1/machines/{mac}/identify',
    operationId: 'identifyMachine',
    tag: 'power',
    auth: 'operator',
    summary: 'The locator LED on (optionally for some seconds) or off, through the BMC',
    description: 'IPMI chassis identify; Redfish LocationIndicatorActive (IndicatorLED on older BMCs). See docs/power.md.',
    pathParams: { mac },
    body: { schema: identifySchema },
    ok: { 200: { description: 'what was done', schema: identifyOut } },
    errors: [404, 409, 415, 502, 503, 504],
  },
  {
    method: 'get',
    path: '/api/v1/machines/{mac}/console',
    operationId: 'getSerialConsole',
    tag: 'machines',
    auth: 'viewer',
    summary: 'The serial console racksmith captured over IPMI SOL while the machine installs: the last 200 lines',
    pathParams: { mac },
    query: { after: { type: 'integer', minimum: 0, description: 'only lines with a larger seq (follow a live capture)' } },
    ok: { 200: { description: 'the capture and its lines', schema: consoleOut } },
    errors: [404],
  },
  {
    method: 'post',
    path: '/api/v1/machines/{mac}/console',
    operationId: 'controlSerialConsole',
    tag: 'machines',
    auth: 'operator',
    summary: 'Detach (free the BMC SOL session for a person; no automatic attach during this install) or attach again',
    pathParams: { mac },
    body: { schema: consoleActionSchema },
    ok: { 200: { description: 'the capture state', schema: consoleOut } },
    errors: [404, 409, 415],
  },
  {
    method: 'get',
    path: '/api/v1/machines/{mac}/events',
    operationId: 'listMachineEvents',
    tag: 'events',
    auth: 'viewer',
    summary: 'The machine\u2019s history: state changes, boot steps, phone-home, power, orchestration',
    pathParams: { mac },
    query: eventQuerySchema,
    ok: { 200: { description: 'events, oldest first', schema: z.array(eventOut) } },
    errors: [404],
  },
  { method: 'get', path: '/api/v1/racks', operationId: 'listRacks', tag: 'machines', auth: 'viewer', summary: 'The racks machines are in, with their machines counted by state', ok: { 200: { description: 'racks', schema: z.array(rackOut) } } },

  // ── events ─────────────────────────────────────────────────────────────────
  {
    method: 'get',
    path: '/api/v1/events',
    operationId: 'listEvents',
    tag: 'events',
    auth: 'viewer',
    summary: 'The site\u2019s event log, or a cluster\u2019s or machine\u2019s, filtered by type',
    description: 'Without `after`: the newest `limit` events (default 500), oldest first; `before` pages back. With `after`: the events after it. `type=power` matches power, power.job… ',
    query: siteEventQuerySchema,
    ok: { 200: { description: 'events, oldest first', schema: z.array(eventOut) } },
    errors: [404],
  },
  {
    method: 'get',
    path: '/api/v1/events/stream',
    operationId: 'streamEvents',
    tag: 'events',
    auth: 'viewer',
    summary: 'Events as they happen (Server-Sent Events), resumable',
    description:
      'Each event is `id: <event id>` and `data: <Event JSON>`; the first is `event: hello` with the newest id. Resumes after the `Last-Event-ID` header (else `?after=`, else from now) without loss. ' +
      'Comments keep idle connections alive. Browsers may pass the token as `?token=` or use the console cookie. A client that does not keep up is disconnected and resumes on reconnect.',
    query: streamQuerySchema,
    ok: { 200: text('text/event-stream', 'an endless event stream') },
    errors: [503],
  },

  // ── power ──────────────────────────────────────────────────────────────────
  {
    method: 'post',
    path: '/api/v1/machines/{mac}/power',
    operationId: 'powerMachine',
    tag: 'power',
    auth: 'operator',
    summary: 'Power on, off, cycle (on when off), reset, or read the power state through the BMC',
    pathParams: { mac },
    body: { schema: machinePowerSchema },
    ok: { 200: { description: 'what was done, with attempts and the cipher suite used', schema: powerResultOut } },
    errors: [404, 409, 415, 502, 503, 504],
  },
  {
    method: 'post',
    path: '/api/v1/machines/{mac}/reimage',
    operationId: 'reimageMachine',
    tag: 'power',
    auth: 'operator',
    summary: 'Reimage: rotate the seed token, leave the cluster, next boot PXE, power cycle',
    description: 'Refused (409 ERR_QUORUM) for a control-plane node whose removal would lose etcd quorum, unless force. Progress: the machine\u2019s events (type reimage).',
    pathParams: { mac },
    body: { schema: reimageSchema, required: false },
    ok: { 202: { description: 'accepted', schema: reimageOut } },
    errors: [404, 409, 415, 502, 503, 504],
  },
  {
    method: 'post',
    path: '/api/v1/racks/{rack}/power',
    operationId: 'powerRack',
    tag: 'power',
    auth: 'operator',
    summary: 'Power every machine of a rack, a few at a time with a delay between starts',
    description:
      'A power-on (on, cycle, reset) of machines that will install first runs their clusters\u2019 preflight — refused with 409 ERR_PREFLIGHT when a check fails — then prefetches their installer artifacts (the job\u2019s `prefetch` phase) before any machine starts; force skips both.',
    pathParams: { rack },
    body: { schema: rackPowerSchema },
    ok: { 202: { description: 'the job, with per-machine state', schema: powerJobOut } },
    errors: [404, 409, 415],
  },
  {
    method: 'get',
    path: '/api/v1/racks/{rack}/power/{job}',
    operationId: 'getRackPowerJob',
    tag: 'power',
    auth: 'viewer',
    summary: 'A rack power job: progress and per-machine results',
    pathParams: { rack, job: jobId },
    ok: { 200: { description: 'the job', schema: powerJobOut } },
    errors: [404],
  },
  {
    method: 'post',
    path: '/api/v1/power/jobs',
    operationId: 'createPowerJob',
    tag: 'power',
    auth: 'operator',
    summary: 'Power selected machines, a few at a time with a delay between starts (a rack job over a selection)',
    description: 'A power-on runs the same preflight and prefetch as a rack power-on (409 ERR_PREFLIGHT; force skips both).',
    body: { schema: powerJobSchema },
    ok: { 202: { description: 'the job, with per-machine state', schema: powerJobOut } },
    errors: [404, 409, 415],
  },
  { method: 'get', path: '/api/v1/power/jobs/{job}', operationId: 'getPowerJob', tag: 'power', auth: 'viewer', summary: 'Any power job (rack or selection) by id', pathParams: { job: jobId }, ok: { 200: { description: 'the job', schema: powerJobOut } }, errors: [404] },

  // ── what machines use while they boot (no API token) ───────────────────────
  {
    method: 'get',
    path: '/boot.ipxe',
    operationId: 'bootScript',
    tag: 'boot path',
    auth: 'none',
    summary: 'The iPXE script for the machine\u2019s state: install, boot from disk, or wait for a role',
    query: {
      mac: { type: 'string', description: 'the booting NIC (iPXE ${net0/mac})' },
      arch: { type: 'string', enum: [...BUILD_ARCHES] },
      platform: { type: 'string', enum: [...PLATFORMS] },
      uuid: { type: 'string', format: 'uuid' },
      attempt: { type: 'string', pattern: '^\\d{1,6}$' },
    },
    ok: { 200: text('text/plain', 'an iPXE script') },
    errors: [403],
  },
  {
    method: 'get',
    path: '/grub/grub.cfg',
    operationId: 'grubConfig',
    tag: 'boot path',
    auth: 'none',
    summary: 'The GRUB config for a machine booted through the signed shim \u2192 GRUB chain (Secure Boot); same query as /boot.ipxe',
    query: { mac: { type: 'string' }, arch: { type: 'string', enum: [...BUILD_ARCHES] }, platform: { type: 'string', enum: [...PLATFORMS] } },
    ok: { 200: text('text/plain', 'a GRUB config') },
    errors: [403],
  },
  {
    method: 'get',
    path: '/grub/grub.cfg-01-{mac}',
    operationId: 'grubConfigOfMac',
    tag: 'boot path',
    auth: 'none',
    summary: 'The per-MAC GRUB config Debian\u2019s signed GRUB asks for first (grub.cfg-01-aa-bb-cc-dd-ee-ff)',
    pathParams: { mac: { schema: { type: 'string', pattern: '^[0-9A-Fa-f-]+$' }, description: 'the MAC with dashes' } },
    ok: { 200: text('text/plain', 'a GRUB config') },
    errors: [403, 404],
  },
  {
    method: 'get',
    path: '/ipxe/{file}',
    operationId: 'ipxeBinary',
    tag: 'boot path',
    auth: 'none',
    summary: 'An iPXE binary over HTTP, for UEFI HTTP Boot clients',
    pathParams: { file: { schema: { type: 'string' }, description: 'ipxe.efi, snponly.efi, undionly.kpxe, arm64 builds' } },
    ok: { 200: text('application/octet-stream', 'the binary') },
    errors: [404],
  },
  {
    method: 'get',
    path: '/artifacts/{release}/{file}',
    operationId: 'installerArtifact',
    tag: 'boot path',
    auth: 'none',
    summary: 'An installer kernel, initrd or ISO (cached from upstream), with Range support',
    pathParams: { release: { schema: { type: 'string' } }, file: { schema: { type: 'string' } } },
    ok: { 200: text('application/octet-stream', 'the file'), 206: text('application/octet-stream', 'a range of it') },
    errors: [404],
  },
  {
    method: 'get',
    path: '/artifacts/{release}/{arch}/{file}',
    operationId: 'installerArtifactOfArch',
    tag: 'boot path',
    auth: 'none',
    summary: 'An installer kernel or initrd for another architecture (arm64), cached from upstream, with Range support',
    pathParams: { release: { schema: { type: 'string' } }, arch: { schema: { type: 'string' } }, file: { schema: { type: 'string' } } },
    ok: { 200: text('application/octet-stream', 'the file'), 206: text('application/octet-stream', 'a range of it') },
    errors: [404],
  },
  {
    method: 'get',
    path: '/seed/{token}/{file}',
    operationId: 'seedFile',
    tag: 'boot path',
    auth: 'none',
    summary: 'A seed file: preseed.cfg (18.04) or the cloud-init NoCloud files (autoinstall on 20.04+)',
    pathParams: { token: seedToken, file: { schema: { type: 'string', enum: [...SEED_FILES] } } },
    ok: { 200: text('text/plain', 'the seed file') },
    errors: [403, 404, 409],
  },
  {
    method: 'post',
    path: '/seed/{token}/installed',
    operationId: 'reportInstalled',
    tag: 'boot path',
    auth: 'none',
    summary: 'The installer\u2019s last step reports that the OS is on disk',
    pathParams: { token: seedToken },
    ok: { 200: { description: 'the machine\u2019s state now', schema: machineEventReplyOut } },
    errors: [403, 404, 409],
  },
  {
    method: 'post',
    path: '/seed/{token}/events',
    operationId: 'reportInstallerEvent',
    tag: 'boot path',
    auth: 'none',
    summary: 'Subiquity/curtin reporting webhook: install progress and failures',
    pathParams: { token: seedToken },
    body: { schema: { type: 'object', properties: { event_type: { type: 'string' }, name: { type: 'string' }, result: { type: 'string' }, description: { type: 'string' }, origin: { type: 'string' } } } },
    ok: { 200: { description: 'the machine\u2019s state now', schema: machineEventReplyOut } },
    errors: [403, 404],
  },
  {
    method: 'post',
    path: '/seed/{token}/phone-home',
    operationId: 'phoneHome',
    tag: 'boot path',
    auth: 'none',
    summary: 'cloud-init phone_home: pins the machine\u2019s SSH host keys',
    pathParams: { token: seedToken },
    body: {
      type: 'application/x-www-form-urlencoded',
      schema: { type: 'object', properties: Object.fromEntries(['pub_key_rsa', 'pub_key_ecdsa', 'pub_key_ed25519', 'instance_id', 'hostname', 'fqdn'].map((k) => [k, { type: 'string' }])) },
    },
    ok: { 200: { description: 'the machine\u2019s state now', schema: machineEventReplyOut } },
    errors: [403, 404, 409],
  },
  {
    method: 'post',
    path: '/seed/{token}/role-setup',
    operationId: 'reportRoleSetup',
    tag: 'boot path',
    auth: 'none',
    summary: 'The role setup\u2019s outcome, posted by its script just before the phone-home: a failure fails the machine with the failing command and the log\u2019s last lines',
    pathParams: { token: seedToken },
    body: {
      type: 'application/x-www-form-urlencoded',
      schema: { type: 'object', properties: { status: { type: 'string', description: 'the setup script exit status' }, command: { type: 'string' }, log: { type: 'string', description: 'the log\u2019s last lines' } }, required: ['status'] },
    },
    ok: { 200: { description: 'the machine\u2019s state now', schema: machineEventReplyOut } },
    errors: [403, 404, 409],
  },
];

/** A zod schema as an OpenAPI 3.1 schema: named answers become `$ref`s to the components. */
function jsonSchema(s: Schema, io: 'input' | 'output'): Json {
  if (!(s instanceof z.ZodType)) return s;
  const id = responseSchemas.get(s)?.id;
  if (id) return { $ref: `#/components/schemas/${id}` };
  const out = z.toJSONSchema(s, { io, unrepresentable: 'any', metadata: responseSchemas }) as Json;
  delete out['$schema'];
  delete out['$defs'];
  return refsToComponents(out) as Json;
}

function refsToComponents(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(refsToComponents);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.entries(v).map(([k, x]) => [k, k === '$ref' && typeof x === 'string' ? x.replace(/^#\/\$defs\//, '#/components/schemas/') : refsToComponents(x)]),
  );
}

function queryParameters(q: Operation['query']): Json[] {
  if (!q) return [];
  const shape: Record<string, Schema> = q instanceof z.ZodObject ? (q.shape as Record<string, z.ZodType>) : q;
  return Object.entries(shape).map(([name, s]) => {
    const schema = jsonSchema(s, 'input');
    const { description, ...rest } = schema;
    return { name, in: 'query', required: s instanceof z.ZodType ? !s.safeParse(undefined).success : false, ...(description ? { description } : {}), schema: rest };
  });
}

function operationObject(op: Operation): Json {
  const statuses = new Set<number>(op.errors ?? []);
  if (op.query || op.body || op.pathParams) statuses.add(400);
  if (op.auth !== 'none' && op.auth !== 'metrics') statuses.add(401);
  if (op.auth === 'operator' || op.auth === 'admin') statuses.add(403);
  const responses: Json = {};
  for (const [status, r] of Object.entries(op.ok)) {
    responses[status] = {
      description: r.description,
      ...(r.headers ? { headers: r.headers } : {}),
      ...(r.schema ? { content: { [r.type ?? 'application/json']: { schema: jsonSchema(r.schema, 'output') } } } : {}),
    };
  }
  for (const status of [...statuses].sort()) {
    responses[String(status)] = { description: ERROR_TEXT[status] ?? 'error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  }
  const parameters = [
    ...Object.entries(op.pathParams ?? {}).map(([name, p]) => ({ name, in: 'path', required: true, ...(p.description ? { description: p.description } : {}), schema: jsonSchema(p.schema, 'input') })),
    ...queryParameters(op.query),
  ];
  return {
    operationId: op.operationId,
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    tags: [op.tag],
    ...(op.auth === 'none' ? { security: [] } : op.auth === 'metrics' ? { security: [{}, { bearer: [] }] } : {}),
    ...(op.auth !== 'none' && op.auth !== 'metrics' ? { 'x-racksmith-role': op.auth } : {}),
    ...(parameters.length ? { parameters } : {}),
    ...(op.body
      ? {
          requestBody: {
            required: op.body.required ?? true,
            content: { [op.body.type ?? 'application/json']: { schema: jsonSchema(op.body.schema, 'input'), ...(op.body.example ? { example: op.body.example } : {}) } },
          },
        }
      : {}),
    responses,
  };
}

/** Every named answer schema, as document components. */
function components(): Json {
  const all = z.toJSONSchema(responseSchemas, { io: 'output', uri: (id) => `#/components/schemas/${id}`, unrepresentable: 'any' }) as { schemas: Record<string, Json> };
  return Object.fromEntries(
    Object.entries(all.schemas).map(([id, s]) => {
      const { $schema: _s, $id: _i, ...rest } = s;
      return [id, rest];
    }),
  );
}

let cached: { version: string; doc: Json } | null = null;

export function openApiDocument(version: string): Json {
  if (cached?.version === version) return cached.doc;
  const paths: Record<string, Json> = {};
  for (const op of OPERATIONS) paths[op.path] = { ...(paths[op.path] ?? {}), [op.method]: operationObject(op) };
  // The error component is referenced by every error answer; make sure it is there even if unused elsewhere.
  void errorOut;
  const doc: Json = {
    openapi: '3.1.0',
    info: {
      title: 'racksmith',
      version,
      description:
        'Bare-metal provisioning: inventory, boot, install, HA kubeadm bootstrap. API calls take `Authorization: Bearer <token>`; each operation names the least token role in `x-racksmith-role` (viewer < operator < admin).',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    tags: ['clusters', 'machines', 'power', 'events', 'session', 'service', 'boot path'].map((name) => ({ name })),
    paths,
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }, schemas: components() },
  };
  cached = { version, doc };
  return doc;
}
