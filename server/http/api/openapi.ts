import { z } from 'zod';
import {
  clusterPatchSchema,
  machinePatchSchema,
  newClusterSchema,
  newMachineSchema,
} from './schemas.js';

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
        description: { 400: 'bad input', 401: 'no or bad token', 403: 'role too low', 404: 'unknown resource', 409: 'conflict', 415: 'wrong content type' }[c] ?? 'error',
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
          properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' } } } },
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
        patch: { summary: 'Change a cluster (admin)', requestBody: jsonBody(clusterPatchSchema), responses: { 200: ok('the cluster'), ...errors(400, 401, 403, 404, 415) } },
        delete: { summary: 'Delete an empty cluster (admin)', responses: { 204: { description: 'deleted' }, ...errors(401, 403, 404, 409) } },
      },
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
          summary: 'Import machines from CSV, all rows or none (admin)',
          requestBody: { required: true, content: { 'text/csv': { schema: { type: 'string' }, example: 'mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password\n' } } },
          responses: { 201: ok('imported machines'), ...errors(400, 401, 403, 409, 415) },
        },
      },
      '/machines/{mac}': {
        parameters: [macParam],
        get: { summary: 'A machine', responses: { 200: ok('the machine'), ...errors(400, 401, 404) } },
        patch: { summary: 'Change a machine (admin)', requestBody: jsonBody(machinePatchSchema), responses: { 200: ok('the machine'), ...errors(400, 401, 403, 404, 409, 415) } },
        delete: { summary: 'Delete a machine (admin)', responses: { 204: { description: 'deleted' }, ...errors(400, 401, 403, 404) } },
      },
      '/machines/{mac}/events': {
        parameters: [
          macParam,
          { name: 'after', in: 'query', required: false, schema: { type: 'integer' } },
          { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 10000 } },
        ],
        get: { summary: "The machine's history", responses: { 200: ok('events', { type: 'array' }), ...errors(400, 401, 404) } },
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
