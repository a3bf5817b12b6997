import { z } from 'zod';
import {
  clusterPatchSchema,
  machinePatchSchema,
  newClusterSchema,
  newMachineSchema,
  sessionSchema,
} from './schemas.js';
import { identifySchema, machinePowerSchema, rackPowerSchema, reimageSchema } from './power.js';
import { consoleActionSchema } from './serial-console.js';
import { upgradeRequestSchema } from './orchestration-routes.js';

/**
 * The OpenAPI 3 document of /api/v1. Request bodies come from the same zod schemas the handlers
 * parse with; a test fails when a route exists that this document lacks, or the other way round.
 */
// OpenAPI 3.0 schema objects are not JSON Schema 2020-12: no `const`, no type arrays, `nullable`.
const bodySchema = (s: z.ZodType): unknown => z.toJSONSchema(s, { io: 'input', unrepresentable: 'any', target: 'openapi-3.0' });

const error = { $ref: '#/components/schemas/Error' };
const errors = (...codes: number[]): Record<string, unknown> =>
  Object.fromEntries(
    codes.map((c) => [
      String(c),
      {
        description:
          {
            400: 'bad input',
            401: 'no or bad token',
            403: 'role too low',
            404: 'unknown resource',
            409: 'conflict',
            415: 'wrong content type',
            502: 'the BMC answered with an error (code ERR_BMC_*)',
            503: 'racksmith is stopping',
            504: 'the BMC did not answer in time (ERR_BMC_TIMEOUT, ERR_BMC_UNREACHABLE)',
          }[c] ?? 'error',
        content: { 'application/json': { schema: error } },
      },
    ]),
  );
const ok = (description: string, schema: unknown = { type: 'object' }): Record<string, unknown> => ({
  description,
  content: { 'application/json': { schema } },
});
const jsonBody = (s: z.ZodType): Record<string, unknown> => ({ required: true, content: { 'application/json': { schema: bodySchema(s) } } });
const macParam = { name: 'mac', in: 'path', required: true, description: 'MAC in any common form', schema: { type: 'string' } };
const nameParam = { name: 'name', in: 'path', required: true, schema: { type: 'string' } };
const rackParam = { name: 'rack', in: 'path', required: true, schema: { type: 'string' } };

export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: '3.0.3',
    info: { title: 'racksmith', version, description: 'Bare-metal provisioning: inventory, boot, install, HA kubeadm bootstrap.' },
    servers: [{ url: '/api/v1' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: { type: 'string' },
                message: { type: 'string' },
                field: { type: 'string' },
                details: {
                  type: 'array',
                  description: 'several findings at once, e.g. every bad row of a CSV import',
                  items: { type: 'object', required: ['message'], properties: { message: { type: 'string' }, field: { type: 'string' }, row: { type: 'integer' } } },
                },
              },
            },
          },
        },
      },
    },
    paths: {
      '/clusters': {
        get: { summary: 'List clusters', responses: { 200: ok('clusters', { type: 'array' }), ...errors(401) } },
        post: { summary: 'Create a cluster (admin)', requestBody: jsonBody(newClusterSchema), responses: { 201: ok('the cluster'), ...errors(400, 401, 403, 409, 415) } },
      },
      '/clusters/{name}': {
        parameters: [nameParam],
        get: { summary: 'A cluster with its machines, state and orchestration steps', responses: { 200: ok('the cluster'), ...errors(401, 404) } },
        patch: {
          summary: 'Change a cluster (admin)',
          description: 'The result must be in the compatibility table (400 ERR_INCOMPATIBLE). Kubernetes version, runtime and CNI of a cluster with joined nodes change only through an upgrade (409 ERR_CLUSTER_LIVE), and not while machines hold the old packages (409 ERR_MACHINES_INSTALLED).',
          requestBody: jsonBody(clusterPatchSchema),
          responses: { 200: ok('the cluster'), ...errors(400, 401, 403, 404, 409, 415) },
        },
        delete: { summary: 'Delete an empty cluster (admin)', responses: { 204: { description: 'deleted' }, ...errors(401, 403, 404, 409) } },
      },
      '/clusters/{name}/kubeconfig': {
        parameters: [nameParam],
        get: {
          summary: "The cluster's admin kubeconfig (admin), once kubeadm init has run on its first control node",
          responses: { 200: { description: 'admin.conf', content: { 'application/yaml': { schema: { type: 'string' } } } }, ...errors(400, 401, 403, 404) },
        },
      },
      '/clusters/{name}/retry': {
        parameters: [nameParam],
        post: {
          summary: "Retry what failed in the cluster's bootstrap (operator): failed machines go back to ready, failed steps run again",
          responses: { 202: ok('what was retried: machine names and step ids'), ...errors(400, 401, 403, 404) },
        },
      },
      '/clusters/{name}/preflight': {
        parameters: [nameParam],
        post: {
          summary: "Check from racksmith's host every upstream the cluster's seeds use (operator): OS mirror and suites, installer artifacts, Kubernetes repository and the pinned versions in its Packages index, Docker CE, CNI manifest, apt proxy",
          description: 'Answers 200 with {cluster, ok, checkedAt, checks: [{id, title, url, state (ok|failed|skipped), status, detail, ms}]}; ok is false when a check failed. Also run before a rack power-on of the cluster\'s machines (unless force). See docs/preflight.md.',
          responses: { 200: ok('the preflight report'), ...errors(400, 401, 403, 404) },
        },
      },
      '/clusters/{name}/prefetch': {
        parameters: [nameParam],
        post: {
          summary: "Cache every installer artifact the cluster's machines will ask for (operator), with progress",
          description: 'Streams NDJSON: {"type":"progress","items":[{release, file, state, bytes, total, error}]} while it runs, then {"type":"result","ok",…}. Joins a download already running.',
          responses: { 200: { description: 'progress, then the result, one JSON object per line', content: { 'application/x-ndjson': { schema: { type: 'string' } } } }, ...errors(400, 401, 403, 404) },
        },
      },
      '/clusters/{name}/upgrade': {
        parameters: [nameParam],
        post: {
          summary:
            'Rolling upgrade by reimage (admin): one minor at a time; preflight, etcd snapshot, the cluster configuration, then control-plane nodes one at a time and workers maxUnavailable at a time; the cluster view shows its progress',
          requestBody: jsonBody(upgradeRequestSchema),
          responses: { 202: ok('the upgrade as recorded'), ...errors(400, 401, 403, 404, 409, 415) },
        },
      },
      ...Object.fromEntries(
        (['pause', 'resume', 'abort'] as const).map((a) => [
          `/clusters/{name}/upgrade/${a}`,
          {
            parameters: [nameParam],
            post: {
              summary: a === 'pause' ? 'Pause the upgrade (operator): no further node is reimaged; those on their way finish' : a === 'resume' ? 'Resume a paused or stopped upgrade (operator); what failed is tried again' : 'Abort the upgrade (operator): no further node is reimaged; nodes already upgraded stay upgraded',
              requestBody: jsonBody(z.object({}).strict()),
              responses: { 200: ok('the upgrade'), ...errors(400, 401, 403, 404, 409) },
            },
          },
        ]),
      ),
      '/machines': {
        get: {
          summary: 'List machines (all of them, or a page with limit/after)',
          parameters: [
            ...['cluster', 'role', 'state', 'rack'].map((n) => ({ name: n, in: 'query', required: false, schema: { type: 'string' } })),
            { name: 'limit', in: 'query', required: false, description: 'page size; a full page has a Link header (rel="next") to the next one', schema: { type: 'integer', minimum: 1, maximum: 10000 } },
            { name: 'after', in: 'query', required: false, description: 'opaque cursor from the Link header of the previous page', schema: { type: 'string' } },
          ],
          responses: {
            200: { ...ok('machines in list order: rack, hostname, MAC (missing rack or hostname first)', { type: 'array' }), headers: { Link: { description: 'with limit, on a full page: the next page', schema: { type: 'string' } } } },
            ...errors(400, 401),
          },
        },
        post: { summary: 'Add (assign) a machine (admin)', requestBody: jsonBody(newMachineSchema), responses: { 201: ok('the machine'), ...errors(400, 401, 403, 409, 415) } },
      },
      '/machines/import': {
        post: {
          summary: 'Import machines from CSV, all rows or none (admin); optional columns bmc_port and bmc_cipher_suite',
          requestBody: { required: true, content: { 'text/csv': { schema: { type: 'string' }, example: 'mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password,bmc_port,bmc_cipher_suite\n' } } },
          responses: { 201: ok('imported machines'), ...errors(400, 401, 403, 409, 415) },
        },
      },
      '/machines/{mac}': {
        parameters: [macParam],
        get: { summary: 'A machine', responses: { 200: ok('the machine'), ...errors(400, 401, 404) } },
        patch: { summary: 'Change a machine (admin); a bmc object merges into the stored one', requestBody: jsonBody(machinePatchSchema), responses: { 200: ok('the machine'), ...errors(400, 401, 403, 404, 409, 415) } },
        delete: {
          summary: 'Delete a machine (admin). A node of its cluster leaves it first (drain, etcd member, Node object, load balancers): 202, and the record goes once it is out',
          parameters: [{ name: 'force', in: 'query', required: false, description: 'remove a node that no longer answers from the cluster side anyway', schema: { type: 'string', enum: ['true', 'false'] } }],
          responses: { 202: ok('the removal request'), 204: { description: 'deleted' }, ...errors(400, 401, 403, 404, 409) },
        },
      },
      '/machines/{mac}/events': {
        parameters: [
          macParam,
          { name: 'after', in: 'query', required: false, schema: { type: 'integer' } },
          { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 10000 } },
        ],
        get: { summary: "The machine's history", responses: { 200: ok('events', { type: 'array' }), ...errors(400, 401, 404) } },
      },
      '/session': {
        post: {
          summary: "The web console's sign-in: checks an API token and sets it as an HttpOnly, SameSite=Strict cookie",
          security: [],
          requestBody: jsonBody(sessionSchema),
          responses: { 200: ok('the token\'s name and role'), ...errors(400, 401) },
        },
        delete: { summary: 'Sign out: clears the cookie', security: [], responses: { 204: { description: 'signed out' } } },
      },
      '/whoami': {
        get: { summary: "The caller's token name and role (viewer, operator, admin)", responses: { 200: ok('name and role'), ...errors(401) } },
      },
      '/events/stream': {
        get: {
          summary: 'Machine and cluster events as they happen (Server-Sent Events), resumable',
          description:
            'Each event is `id: <event id>` and `data: <event JSON>`; the first is `event: hello` with the newest id. ' +
            'Resumes after the `Last-Event-ID` header (else `?after=`, else from now) without loss. Comments keep idle ' +
            'connections alive. Browsers may pass the token as `?token=` or use the console cookie. A client that does not ' +
            'keep up is disconnected and resumes on reconnect.',
          parameters: [
            { name: 'Last-Event-ID', in: 'header', required: false, schema: { type: 'string', pattern: '^\\d+$' } },
            { name: 'after', in: 'query', required: false, schema: { type: 'integer', minimum: 0 } },
            ...['cluster', 'rack', 'mac', 'token'].map((n) => ({ name: n, in: 'query', required: false, schema: { type: 'string' } })),
          ],
          responses: { 200: { description: 'an endless event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...errors(400, 401), 503: { description: 'shutting down', content: { 'application/json': { schema: error } } } },
        },
      },
      '/machines/{mac}/power': {
        parameters: [macParam],
        post: {
          summary: 'Power on, off, cycle (on when off), reset, or read the power state through the BMC (operator)',
          requestBody: jsonBody(machinePowerSchema),
          responses: { 200: ok('what was done, with attempts and the cipher suite used'), ...errors(400, 401, 403, 404, 409, 502, 503, 504) },
        },
      },
      '/machines/{mac}/reimage': {
        parameters: [macParam],
        post: {
          summary: 'Reimage: rotate the seed token, leave the cluster, next boot PXE, power cycle (operator)',
          description: 'Refused (409 ERR_QUORUM) for a control-plane node whose removal would lose etcd quorum, unless force. Progress: the machine\'s events (type reimage). See docs/power.md.',
          requestBody: { required: false, content: { 'application/json': { schema: bodySchema(reimageSchema) } } },
          responses: { 202: ok('the reimage id and whether the node leaves its cluster first'), ...errors(400, 401, 403, 404, 409, 502, 503, 504) },
        },
      },
      '/machines/{mac}/identify': {
        parameters: [macParam],
        post: {
          summary: 'The locator LED on (optionally for some seconds) or off, through the BMC (operator)',
          description: 'IPMI chassis identify; Redfish LocationIndicatorActive (IndicatorLED on older BMCs). See docs/power.md.',
          requestBody: jsonBody(identifySchema),
          responses: { 200: ok('what was done'), ...errors(400, 401, 403, 404, 409, 502, 503, 504) },
        },
      },
      '/machines/{mac}/console': {
        parameters: [macParam],
        get: {
          summary: 'The serial console racksmith captured over IPMI SOL while the machine installs: the last 200 lines (viewer)',
          parameters: [{ name: 'after', in: 'query', required: false, schema: { type: 'integer', minimum: 0 }, description: 'only lines with a larger seq (follow a live capture)' }],
          responses: { 200: ok('{attached, state, reason, lines: [{seq, text}]}'), ...errors(400, 401, 404) },
        },
        post: {
          summary: 'Detach (free the BMC SOL session for a person; no automatic attach during this install) or attach again (operator)',
          requestBody: jsonBody(consoleActionSchema),
          responses: { 200: ok('the capture state'), ...errors(400, 401, 403, 404, 409) },
        },
      },
      '/racks/{rack}/power': {
        parameters: [rackParam],
        post: {
          summary: 'Power every machine of a rack, a few at a time with a delay between starts (operator)',
          description: "A power-on (on, cycle, reset) of machines that will install first runs their clusters' preflight — refused with 409 ERR_PREFLIGHT when a check fails — then prefetches their installer artifacts (the job's `prefetch` phase) before any machine starts; force skips both.",
          requestBody: jsonBody(rackPowerSchema),
          responses: { 202: ok('the job, with per-machine state'), ...errors(400, 401, 403, 404, 409) },
        },
      },
      '/racks/{rack}/power/{job}': {
        parameters: [rackParam, { name: 'job', in: 'path', required: true, schema: { type: 'string' } }],
        get: { summary: 'A rack power job: progress and per-machine results', responses: { 200: ok('the job'), ...errors(400, 401, 404) } },
      },
      '/ssh-key': {
        get: { summary: "racksmith's SSH public key (the one the seeds install)", responses: { 200: { description: 'OpenSSH public key', content: { 'text/plain': {} } }, ...errors(401) } },
      },
      '/openapi.json': {
        get: { summary: 'This document', security: [], responses: { 200: ok('OpenAPI 3 document') } },
      },
    },
  };
}
