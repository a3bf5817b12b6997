import { createHash } from 'node:crypto';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import type { Store } from '../server/inventory/store.js';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { storedRows } from './lib/inventory.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { NASTY_STRINGS, Rng, mutateBytes, seedFromEnv } from './lib/fuzz.js';

/**
 * A seeded fuzz of every route in the served OpenAPI document (so a new route is fuzzed without
 * touching this file) against the real `racksmith serve`: random and mutated JSON bodies, CSV
 * files, query strings, path parameters and headers. After every request:
 *   - the status is below 500 and the process is still running;
 *   - a refused request (≥ 300) and every read left the database byte-for-byte as it was (a hash
 *     of every table, read from the SQLite file through a read-only connection); an accepted
 *     write becomes the new baseline, so every change is accounted for by a 2xx write;
 *   - the BMC password the fuzz uses is in no response.
 * At the end the protected cluster and its machines, which fuzz writes never target with a
 * token that could change them, are exactly as before, and no log line is an error.
 * Replay a failure with FUZZ_SEED=<seed> (and FUZZ_COUNT to run longer).
 */
const test = suite('api fuzz: every route, random and mutated input, no 5xx, no change from refused input');

const SEED = seedFromEnv(0x2a5eed);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 2400);
const BMC_PASSWORD = 'fz-Bmc-pw-7731';

const FUZZ_CLUSTERS = ['fz1', 'fz2', 'fz3'];
const FUZZ_MACS = Array.from({ length: 14 }, (_, i) => `52:54:00:f0:00:${i.toString(16).padStart(2, '0')}`);
const KEEP = 'keep';
const KEEP_MACS = ['52:54:00:e0:00:01', '52:54:00:e0:00:02', '52:54:00:e0:00:03'];

interface Route {
  readonly method: string;
  readonly template: string;
  readonly pathParams: readonly string[];
  readonly queryParams: readonly string[];
  readonly body: { readonly type: string; readonly schema: any } | null;
}

interface FuzzRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: Buffer | undefined;
  /** True when the request may change stored data if the server accepts it. */
  readonly write: boolean;
  readonly route: string;
}

let rs: RacksmithProcess;
let tokens: Record<'admin' | 'operator' | 'viewer', string>;
let db: Store;
let routes: Route[] = [];
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

// ── the database, hashed ────────────────────────────────────────────────────
async function dbHash(): Promise<string> {
  const h = createHash('sha256');
  const tables = (await storedRows(db, db.engine === 'sqlite' ? "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name" : "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name")) as { name: string }[];
  for (const { name } of tables) {
    if (name === 'sqlite_sequence') continue; // ids are in the rows themselves
    h.update(`\u0001${name}\u0001`);
    // Rows sorted as text: some tables have no rowid to order by (WITHOUT ROWID).
    // A refused reimage is recorded as the machine's event (the audit trail of who tried what):
    // the one write a refusal makes, so it is left out of the comparison.
    const rows = (await storedRows(db, `SELECT * FROM "${name}"`)).map((r) => JSON.stringify(r));
    for (const row of rows.filter((r) => name !== 'events' || !r.includes('\\"step\\":\\"refused\\"')).sort()) h.update(row);
  }
  return h.digest('hex');
}

// ── sending ─────────────────────────────────────────────────────────────────
function send(r: FuzzRequest): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const u = new URL(rs.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, method: r.method, path: r.path, headers: r.headers, agent, timeout: 30_000 },
      (res) => {
        // An event stream that was accepted never ends: its status and headers are the answer.
        if (String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
          resolve({ status: res.statusCode ?? 0, text: '', headers: res.headers });
          res.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(r.body);
  });
}

function describe(r: FuzzRequest, i: number): string {
  const body = r.body ? JSON.stringify(r.body.subarray(0, 400).toString('utf8')) + (r.body.length > 400 ? `… (${r.body.length} bytes)` : '') : '(none)';
  return `seed ${SEED} #${i}: ${r.method} ${r.path.slice(0, 300)}\n  headers ${JSON.stringify(r.headers).slice(0, 400)}\n  body ${body}`;
}

// ── values ──────────────────────────────────────────────────────────────────
/** Percent-encoding that, unlike encodeURIComponent, takes lone surrogates too (as U+FFFD). */
function pct(s: string): string {
  return [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9._~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0'))).join('');
}

function macForm(rng: Rng, mac: string): string {
  const hex = mac.replace(/:/g, '');
  switch (rng.int(5)) {
    case 0:
      return mac;
    case 1:
      return mac.toUpperCase();
    case 2:
      return mac.replace(/:/g, '-');
    case 3:
      return `${hex.slice(0, 4)}.${hex.slice(4, 8)}.${hex.slice(8)}`;
    default:
      return hex;
  }
}

function nasty(rng: Rng): unknown {
  switch (rng.int(12)) {
    case 0:
      return null;
    case 1:
      return rng.pick([true, false]);
    case 2:
      return rng.pick([0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, 65536, 70000]);
    case 3:
      return [];
    case 4:
      return {};
    case 5:
      return [rng.pick(NASTY_STRINGS)];
    case 6:
      return { nested: { deeper: [1, { x: 'y' }] } };
    case 7: {
      let v: unknown = 'deep';
      for (let i = 0; i < rng.range(10, 400); i++) v = rng.chance(0.5) ? [v] : { a: v };
      return v;
    }
    default:
      return rng.pick(NASTY_STRINGS);
  }
}

/** A plausible value for a field, by its name first (so that valid writes happen), else by its schema. */
function valueFor(rng: Rng, name: string, schema: any, mutate: boolean): unknown {
  if (mutate && rng.chance(0.06)) return nasty(rng);
  switch (name) {
    case 'mac':
      return macForm(rng, rng.chance(0.08) ? rng.pick(KEEP_MACS) : rng.pick(FUZZ_MACS));
    case 'hostname':
      return rng.chance(0.05) ? 'keep1' : `fz-h${rng.int(24)}`;
    case 'cluster':
      return rng.pick(FUZZ_CLUSTERS);
    case 'name':
      return mutate && rng.chance(0.08) ? KEEP : rng.pick(FUZZ_CLUSTERS);
    case 'ip':
      return rng.chance(0.05) ? '10.99.0.1' : `10.98.0.${rng.int(40)}`;
    case 'rack':
      return `fz-r${rng.int(3)}`;
    case 'kubernetesVersion':
      return mutate ? rng.pick(['1.28.4', '1.18.6', 'v1.30.0', '1.23.17', '1.17.0']) : rng.pick(['1.28.4', 'v1.30.0']);
    case 'containerRuntime':
      return mutate ? rng.pick(['docker', 'containerd']) : 'containerd';
    case 'podSubnet':
    case 'serviceSubnet':
      return rng.pick(['10.244.0.0/16', '10.96.0.0/12', '192.168.0.0/16', ...(mutate ? ['10.0.0.0/33'] : [])]);
    case 'controlPlaneEndpoint':
      return rng.pick(['10.98.0.10:6443', 'lb.example:6443', ...(mutate ? ['lb:99999'] : [])]);
    case 'address':
      // BMC addresses stay on loopback: a power call the fuzz makes must not leave this machine.
      return `127.0.98.${rng.int(40) + 1}`;
    case 'username':
      return 'admin';
    case 'password':
      return BMC_PASSWORD;
  }
  return fromSchema(rng, schema, mutate);
}

function fromSchema(rng: Rng, schema: any, mutate: boolean): unknown {
  if (!schema || typeof schema !== 'object') return rng.pick(NASTY_STRINGS);
  if (Array.isArray(schema.anyOf) || Array.isArray(schema.oneOf)) {
    const branches = (schema.anyOf ?? schema.oneOf) as any[];
    return fromSchema(rng, rng.pick(branches), mutate);
  }
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum)) return rng.pick(schema.enum as unknown[]);
  const type = Array.isArray(schema.type) ? rng.pick(schema.type as string[]) : schema.type;
  if (schema.nullable && rng.chance(0.2)) return null;
  switch (type) {
    case 'null':
      return null;
    case 'boolean':
      return rng.chance(0.5);
    case 'integer':
    case 'number': {
      const min = typeof schema.minimum === 'number' ? schema.minimum : 0;
      const max = typeof schema.maximum === 'number' ? schema.maximum : 1000;
      return rng.range(min, max);
    }
    case 'array':
      return Array.from({ length: rng.int(3) }, () => fromSchema(rng, schema.items, mutate));
    case 'object': {
      const out: Record<string, unknown> = {};
      const required = new Set<string>(schema.required ?? []);
      for (const [key, sub] of Object.entries<any>(schema.properties ?? {})) {
        if (required.has(key) || rng.chance(0.5)) out[key] = valueFor(rng, key, sub, mutate);
      }
      return out;
    }
    default: {
      const min = typeof schema.minLength === 'number' ? schema.minLength : 1;
      const max = typeof schema.maxLength === 'number' ? Math.min(schema.maxLength, 24) : 12;
      return rng.string(rng.range(min, Math.max(min, max)), 'abcdefghijklmnopqrstuvwxyz0123456789-');
    }
  }
}

/** A structural mutation somewhere inside a JSON value. */
function mutateJson(rng: Rng, value: unknown): unknown {
  if (rng.chance(0.1)) return nasty(rng);
  if (value === null || typeof value !== 'object') return rng.chance(0.5) ? nasty(rng) : value;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  switch (rng.int(5)) {
    case 0:
      if (keys.length) delete obj[rng.pick(keys)];
      return obj;
    case 1:
      obj[rng.chance(0.5) ? rng.pick(['extra', 'state', 'id', 'password', 'seedToken', 'bmc_password']) : rng.string(rng.range(1, 10))] = nasty(rng);
      return obj;
    case 2:
      if (keys.length) obj[rng.pick(keys)] = nasty(rng);
      return obj;
    case 3:
      if (keys.length) {
        const k = rng.pick(keys);
        obj[k] = mutateJson(rng, obj[k]);
      }
      return obj;
    default:
      return Array.isArray(obj) ? obj : [obj];
  }
}

function jsonText(rng: Rng, value: unknown): Buffer {
  let text = JSON.stringify(value) ?? 'null';
  if (rng.chance(0.06) && text.startsWith('{') && text.length > 2) {
    // Keys JSON.stringify would never write: duplicates and prototype names.
    const extra = rng.pick(['"__proto__":{"role":"admin"}', '"constructor":{"prototype":{"x":1}}', '"mac":"52:54:00:f0:00:01"', '"hostname":null']);
    text = `{${extra},${text.slice(1)}`;
  }
  let buf: Buffer = Buffer.from(text, 'utf8');
  if (rng.chance(0.2)) {
    for (let i = rng.range(1, 3); i > 0; i--) buf = mutateBytes(rng, buf);
  }
  if (rng.chance(0.03)) buf = Buffer.concat([Buffer.from('\ufeff'), buf]);
  if (rng.chance(0.01)) buf = Buffer.concat([buf, Buffer.alloc(1_100_000, 0x20)]);
  return buf;
}

const CSV_HEADER = ['mac', 'hostname', 'role', 'cluster', 'ip', 'rack', 'bmc_address', 'bmc_username', 'bmc_password'];

function csvText(rng: Rng, clean: boolean): Buffer {
  const m = clean ? 0 : 1;
  let header = [...CSV_HEADER];
  if (rng.chance(0.3)) header = header.sort(() => rng.next() - 0.5);
  if (rng.chance(0.15 * m)) header = header.filter(() => rng.chance(0.8));
  if (rng.chance(0.05 * m)) header.push(rng.pick(['colour', 'MAC', 'mac', 'bmc_port', '']));
  const rows = rng.chance(0.02 * m) ? 10_001 : rng.range(clean ? 1 : 0, 4);
  // A clean file uses fresh MACs/hostnames/IPs, so that most clean imports succeed.
  const fresh = (): number => rng.int(1 << 20);
  const lines = [header.join(',')];
  for (let r = 0; r < rows; r++) {
    const cells = header.map((col) => {
      let v: unknown;
      if (col === 'bmc_address') v = valueFor(rng, 'address', null, false);
      else if (col === 'bmc_username') v = 'admin';
      else if (col === 'bmc_password') v = BMC_PASSWORD;
      else if (col === 'role') v = rng.pick(['worker', 'control-plane', 'loadbalancer', ...(clean ? [] : ['wizard', ''])]);
      else if (clean && col === 'mac') v = `52:54:01:${fresh().toString(16).padStart(6, '0').replace(/(..)(?!$)/g, '$1:')}`;
      else if (clean && col === 'hostname') v = `fz-csv-${fresh()}`;
      else if (clean && col === 'ip') v = `10.97.${rng.int(256)}.${rng.int(256)}`;
      else v = valueFor(rng, col, { type: 'string' }, false);
      if (rng.chance(0.05 * m)) v = rng.pick(NASTY_STRINGS).slice(0, 200);
      const s = String(v);
      return /[",\n\r]/.test(s) || rng.chance(0.05) ? `"${s.replace(/"/g, '""')}"` : s;
    });
    if (rng.chance(0.03 * m)) cells.push('extra');
    lines.push(cells.join(','));
  }
  let text = lines.join(rng.chance(0.2) ? '\r\n' : '\n') + (rng.chance(0.5) ? '\n' : '');
  if (rng.chance(0.05 * m)) text = text.replace(/,/g, rng.pick([';', '\t']));
  if (rng.chance(0.04)) text = '\ufeff' + text;
  let buf: Buffer = Buffer.from(text, 'utf8');
  if (rng.chance(0.25 * m)) {
    for (let i = rng.range(1, 4); i > 0; i--) buf = mutateBytes(rng, buf);
  }
  if (rng.chance(0.02 * m)) buf = rng.bytes(rng.range(0, 300));
  return buf;
}

function pathValue(rng: Rng, name: string, method: string, auth: string): string {
  const write = method !== 'GET';
  const mayTouchKeep = !write || auth !== 'admin';
  if (rng.chance(0.1)) {
    const raw = rng.pick(NASTY_STRINGS).slice(0, 400);
    return rng.chance(0.7) ? pct(raw) : rng.pick(['%', '%zz', '%00', '..', '%2F', '%2e%2e', raw.replace(/[^\x21-\x7e]/g, '')]);
  }
  if (name === 'mac') {
    const mac = mayTouchKeep && rng.chance(0.25) ? rng.pick(KEEP_MACS) : rng.pick(FUZZ_MACS);
    if (rng.chance(0.05)) return pct(mutateBytes(rng, Buffer.from(mac)).toString('latin1'));
    return pct(macForm(rng, mac));
  }
  if (name === 'name') {
    // DELETE of the protected cluster as admin is refused while it has machines; PATCH could succeed.
    const keepOk = mayTouchKeep || method === 'DELETE';
    return keepOk && rng.chance(0.25) ? KEEP : rng.pick(FUZZ_CLUSTERS);
  }
  return pct(rng.string(rng.range(1, 12)));
}

function queryString(rng: Rng, route: Route, clean: boolean): string {
  if (rng.chance(clean ? 0.9 : 0.4)) return '';
  const parts: string[] = [];
  for (let i = rng.range(1, 4); i > 0; i--) {
    const known = route.queryParams.length > 0 && rng.chance(0.7);
    const key = known ? rng.pick(route.queryParams) : rng.pick(['x', 'limit', 'after', 'token', '__proto__', 'constructor', 'a[b]', 'cluster', 'role[]', '', '%zz']);
    let value: string;
    if (rng.chance(0.6)) {
      const v =
        key === 'limit' || key === 'after'
          ? String(rng.pick([0, 1, 5, 10_000, 10_001, -1, 1e20, 2 ** 60]))
          : key === 'state'
            ? rng.pick(['discovered', 'assigned', 'joined', 'nope'])
            : valueFor(rng, key, { type: 'string' }, true);
      value = pct(typeof v === 'string' ? v.slice(0, 2000) : JSON.stringify(v) ?? '');
    } else {
      value = rng.pick(['', '%', '%zz', '%00', '&&', '=', '%E0%A4%A', '+', '%F0%9F%98%80']);
    }
    parts.push(rng.chance(0.05) ? key : `${key}=${value}`);
  }
  return '?' + parts.join('&');
}

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8', 'application/json; charset=utf-16', 'application/json; charset=bogus', 'APPLICATION/JSON', 'application/merge-patch+json', 'text/plain', 'text/csv', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', ';;;', 'application/json; charset="'];
const CSV_TYPES = ['text/csv', 'text/csv; charset=utf-8', 'text/csv; charset=latin1', 'text/csv; charset=bogus', 'text/plain', 'application/csv', 'application/json', 'application/octet-stream', 'text/csv; charset=utf-16le'];

function buildRequest(rng: Rng, route: Route): FuzzRequest {
  // A third of the requests are well-formed admin requests, so that writes are accepted and the
  // mutated ones meet machines and clusters in every state.
  const clean = rng.chance(0.35);
  const roll = clean ? 0 : rng.next();
  const auth = roll < 0.7 ? 'admin' : roll < 0.8 ? 'viewer' : roll < 0.86 ? 'operator' : roll < 0.93 ? 'none' : 'garbage';
  let method = route.method;
  if (!clean && rng.chance(0.03)) method = rng.pick(['PUT', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'DELETE', 'PATCH', 'POST']);
  let path = route.template.replace(/\{(\w+)\}/g, (_, name: string) => pathValue(rng, name, method, auth));
  path += queryString(rng, route, clean);
  if (!clean && rng.chance(0.01)) path = path.replace('/api/v1', rng.pick(['/api/v1/', '/api//v1', '/API/V1', '/api/v1/../v1']));

  const headers: Record<string, string> = {};
  if (auth === 'admin' || auth === 'viewer' || auth === 'operator') headers['authorization'] = `Bearer ${tokens[auth]}`;
  else if (auth === 'garbage') headers['authorization'] = rng.pick(['Bearer', 'Bearer ', 'bearer ' + tokens.admin, 'Basic YWRtaW46YWRtaW4=', 'Bearer rs_' + 'A'.repeat(43), `Bearer ${tokens.admin}x`, 'Bearer ' + 'x'.repeat(8000), `Bearer  ${tokens.viewer}`]);
  if (rng.chance(0.05)) headers['x-request-id'] = rng.pick(['abc', '../../x', 'x'.repeat(200), '']);
  if (rng.chance(0.03)) headers['accept'] = rng.pick(['text/html', '*/*', 'application/xml', '']);

  let body: Buffer | undefined;
  if (route.body && route.body.type === 'text/csv') {
    body = csvText(rng, clean);
    if (clean || !rng.chance(0.05)) headers['content-type'] = clean || rng.chance(0.8) ? 'text/csv' : rng.pick(CSV_TYPES);
  } else if (route.body) {
    let value = fromSchema(rng, route.body.schema, !clean);
    for (let i = !clean && rng.chance(0.6) ? rng.range(1, 3) : 0; i > 0; i--) value = mutateJson(rng, value);
    body = clean ? Buffer.from(JSON.stringify(value)) : jsonText(rng, value);
    if (clean || !rng.chance(0.04)) headers['content-type'] = clean || rng.chance(0.85) ? 'application/json' : rng.pick(JSON_TYPES);
  } else if (!clean && rng.chance(0.06)) {
    body = jsonText(rng, { stray: nasty(rng) });
    headers['content-type'] = rng.pick(JSON_TYPES);
  }
  if (body && !clean && rng.chance(0.03)) {
    const enc = rng.pick(['gzip', 'gzip-bad', 'deflate', 'br', 'zstd', 'identity']);
    if (enc === 'gzip') body = gzipSync(body);
    headers['content-encoding'] = enc === 'gzip-bad' ? 'gzip' : enc;
  }
  if (body && method === 'GET' && rng.chance(0.5)) body = undefined;
  if (body) headers['content-length'] = String(body.length);
  return { method, path, headers, body, write: !['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND'].includes(method), route: `${route.method} ${route.template}` };
}

// ── raw HTTP framing the client library would never send ────────────────────
function raw(bytes: Buffer | string, waitMs = 1500): Promise<string> {
  const u = new URL(rs.url);
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    let got = '';
    const done = (): void => {
      sock.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, waitMs);
    sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
    sock.on('error', () => {
      clearTimeout(timer);
      done();
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    sock.write(bytes);
  });
}

// ── the suite ───────────────────────────────────────────────────────────────
test.before(async () => {
  rs = await startRacksmith({ env: { RACKSMITH_LOG_LEVEL: 'info', RACKSMITH_POWER_TIMEOUT_SECONDS: '2', RACKSMITH_POWER_RETRIES: '0' } });
  tokens = {
    admin: (await rs.cli(['token', 'create', '--role', 'admin'])).trim(),
    operator: (await rs.cli(['token', 'create', '--role', 'operator'])).trim(),
    viewer: (await rs.cli(['token', 'create', '--role', 'viewer'])).trim(),
  };
  const cluster = { ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'calico' };
  for (const name of [KEEP, ...FUZZ_CLUSTERS]) {
    const r = await api(rs.url, tokens.admin, 'POST', '/api/v1/clusters', { name, ...cluster });
    assert.is(r.status, 201, r.text);
  }
  for (const [i, mac] of KEEP_MACS.entries()) {
    const r = await api(rs.url, tokens.admin, 'POST', '/api/v1/machines', {
      mac,
      hostname: `keep${i + 1}`,
      role: i === 0 ? 'loadbalancer' : 'control-plane',
      cluster: KEEP,
      ip: `10.99.0.${i + 1}`,
      rack: 'keep-rack',
      bmc: { driver: 'ipmi', address: `127.0.99.${i + 1}`, username: 'admin', password: BMC_PASSWORD },
    });
    assert.is(r.status, 201, r.text);
  }
  const doc = (await api(rs.url, null, 'GET', '/api/v1/openapi.json')).body;
  assert.is(doc.servers[0].url, '/');
  routes = [];
  // The API's routes; the boot path (seeds, artifacts, boot scripts) has suites of its own, and an
  // artifact request may fetch from upstream.
  for (const [template, ops] of Object.entries<any>(doc.paths).filter(([t]) => t.startsWith('/api/v1/'))) {
    const shared: any[] = ops.parameters ?? [];
    for (const [method, op] of Object.entries<any>(ops)) {
      if (method === 'parameters') continue;
      const params = [...shared, ...(op.parameters ?? [])];
      const content = op.requestBody?.content ?? {};
      const type = Object.keys(content)[0];
      routes.push({
        method: method.toUpperCase(),
        template,
        pathParams: params.filter((p) => p.in === 'path').map((p) => p.name),
        queryParams: params.filter((p) => p.in === 'query').map((p) => p.name),
        body: type ? { type, schema: content[type].schema } : null,
      });
    }
  }
  db = await rs.openStore();
});

test.after(async () => {
  await db?.close();
  agent.destroy();
  await rs?.stop();
  rs?.cleanup();
});

test(`≥ 2,000 seeded requests over every documented route (seed ${SEED})`, async () => {
  assert.ok(routes.length >= 12, `only ${routes.length} routes in the document`);
  const keepBefore = {
    cluster: (await api(rs.url, tokens.viewer, 'GET', `/api/v1/clusters/${KEEP}`)).body,
    machines: (await api(rs.url, tokens.viewer, 'GET', `/api/v1/machines?cluster=${KEEP}`)).body,
  };
  assert.is(keepBefore.machines.length, KEEP_MACS.length);

  const rng = new Rng(SEED);
  const perRoute = new Map<string, Record<string, number>>();
  let accepted = 0;
  let baseline = await dbHash();
  for (let i = 0; i < COUNT; i++) {
    const route = routes[i % routes.length] as Route;
    const req = buildRequest(rng, route);
    let res;
    try {
      res = await send(req);
    } catch (err) {
      // A request whose head is over Node's 16 KiB limit is answered 431 and its connection
      // closed while the client may still be sending: a reset is then the drop, not a fault —
      // as long as the server still answers the next request.
      const head = req.path.length + Object.entries(req.headers).reduce((n, [k, v]) => n + k.length + String(v).length + 4, 0);
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' && head > 16 * 1024) {
        assert.is((await api(rs.url, tokens.viewer, 'GET', '/healthz')).status, 200, 'the server stopped answering after an oversized request');
        continue;
      }
      // A refused connection or reset means the server died or cut us off: both are failures.
      assert.unreachable(`${describe(req, i)}\n  → ${(err as Error).message}\n${rs.output().slice(-2000)}`);
      return;
    }
    const tally = perRoute.get(req.route) ?? {};
    const cls = `${Math.floor(res.status / 100)}xx`;
    tally[cls] = (tally[cls] ?? 0) + 1;
    perRoute.set(req.route, tally);

    // 502/504 with an ERR_BMC_* code is the documented answer of a power call whose BMC (here: a
    // loopback address where nothing listens) failed or never answered — not a server fault.
    const bmcAnswer = (res.status === 502 || res.status === 504) && /"code":"ERR_BMC_/.test(res.text);
    assert.ok(res.status < 500 || bmcAnswer, `${describe(req, i)}\n  → ${res.status} ${res.text.slice(0, 500)}`);
    assert.is(rs.child.exitCode, null, 'the server exited');
    assert.not.ok(res.text.includes(BMC_PASSWORD), `${describe(req, i)}\n  → the BMC password is in the response`);
    if (res.status >= 400 && req.method !== 'HEAD' && String(res.headers['content-type'] ?? '').includes('json')) {
      const err = JSON.parse(res.text) as { error?: { code?: unknown; message?: unknown } };
      assert.type(err.error?.code, 'string', `${describe(req, i)}\n  → error body without a code: ${res.text.slice(0, 300)}`);
      assert.type(err.error?.message, 'string');
    }
    const now = await dbHash();
    if (bmcAnswer) {
      // The power call was valid and was tried: its failure is recorded as the machine's event.
      baseline = now;
    } else if (req.write && res.status >= 200 && res.status < 300) {
      accepted++;
      baseline = now;
    } else {
      assert.is(now, baseline, `${describe(req, i)}\n  → ${res.status}: stored data changed by a request that was refused or read-only`);
    }
  }

  process.stdout.write(
    `\n  seed ${SEED}, ${COUNT} requests, ${accepted} accepted writes\n` +
      [...perRoute].map(([route, t]) => `    ${route.padEnd(34)} ${Object.entries(t).sort().map(([k, v]) => `${k} ${v}`).join('  ')}`).join('\n') +
      '\n',
  );

  // Every route was fuzzed, and the fuzz reached past validation: some writes were accepted.
  for (const r of routes) assert.ok(perRoute.has(`${r.method} ${r.template}`), `route ${r.method} ${r.template} was never fuzzed`);
  assert.ok(accepted >= 20, `only ${accepted} writes accepted: the inputs never got past validation`);

  const keepAfter = {
    cluster: (await api(rs.url, tokens.viewer, 'GET', `/api/v1/clusters/${KEEP}`)).body,
    machines: (await api(rs.url, tokens.viewer, 'GET', `/api/v1/machines?cluster=${KEEP}`)).body,
  };
  assert.equal(keepAfter, keepBefore);
});

test('malformed HTTP framing: answered 4xx or dropped, never a crash', async () => {
  const auth = `Authorization: Bearer ${tokens.admin}\r\n`;
  const cases: (string | Buffer)[] = [
    'GET /api/v1/machines HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
    'GET /api/v1/machines HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
    `POST /api/v1/machines HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mac":`,
    `POST /api/v1/machines HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
    `POST /api/v1/machines HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
    `POST /api/v1/machines/import HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: text/csv\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nmac\n`,
    'GET /api/v1/machines HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \u0000\u0001\r\n\r\n',
    Buffer.from(`GET /api/v1/machines HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe${tokens.admin}\r\n\r\n`, 'latin1'),
    `GET /api/v1/machines HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    `GET /api/v1/machines HTTP/1.0\r\n${auth}\r\n`,
    `GET http://evil.example/api/v1/machines HTTP/1.1\r\nHost: x\r\n${auth}\r\n`,
    `GET * HTTP/1.1\r\nHost: x\r\n${auth}\r\n`,
    `GET /api/v1/machines/52:54:00:e0:00:01 HTTP/1.1\r\nHost: x\r\n${auth}\r\nGET /api/v1/clusters HTTP/1.1\r\nHost: x\r\n${auth}\r\n`,
    `BREW /api/v1/machines HTTP/1.1\r\nHost: x\r\n\r\n`,
    'GET /api/v1/machines HTTP/9.9\r\n\r\n',
    'GET /api/v1/machines\r\n\r\n',
    '\r\n\r\n\r\n',
    Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]),
    `GET /api/v1/machines?${'a=1&'.repeat(5000)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`,
    `GET /api/v1/machines/${'%'.repeat(3)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`,
    `PATCH /api/v1/clusters/keep HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03`,
  ];
  const before = await dbHash();
  for (const [i, c] of cases.entries()) {
    const reply = await raw(c);
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(reply)?.[1];
    if (status) assert.ok(Number(status) < 500, `raw case ${i}: ${reply.slice(0, 200)}`);
    assert.is(rs.child.exitCode, null, `raw case ${i} stopped the server`);
  }
  assert.is(await dbHash(), before, 'a malformed request changed stored data');
  assert.is((await api(rs.url, null, 'GET', '/healthz')).status, 200);
});

test('the process is up, healthy, and logged no error', async () => {
  const health = await api(rs.url, null, 'GET', '/healthz');
  assert.is(health.status, 200);
  const errors = rs
    .output()
    .split('\n')
    .filter((l) => /"level":"(error|fatal)"/.test(l));
  assert.equal(errors.slice(0, 3), [], 'error log lines');
  assert.not.ok(rs.output().includes(BMC_PASSWORD), 'the BMC password is in the log');
});

test.run();
