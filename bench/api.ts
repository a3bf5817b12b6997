/**
 * `npm run bench:api`: the REST API under load with 5,000 machines in the inventory.
 *
 *   GET /api/v1/machines            (every machine, ~3 MB of JSON)
 *   GET /api/v1/machines?limit=100  (one page)
 *   GET /api/v1/machines/{mac}      (one machine)
 *
 * Load from wrk (a Lua script adds the bearer token). The peers, measured in the same run with
 * the same wrk settings on exactly the same JSON bodies: nginx serving static copies (one worker
 * process; racksmith serves from one Node thread), and a bare Express 5 app sending them from
 * memory with res.send — the floor for any Express handler. Then the list right after a write,
 * when no encoded response can be reused. Figures depend on the machine; the ratios are the
 * point. Run alone: `flock /tmp/racksmith-heavy.lock` is part of the npm script.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import express from 'express';
import { api, freePort, startRacksmith } from '../test/lib/racksmith.js';

const run = promisify(execFile);
const MACHINES = Number(process.env['BENCH_MACHINES'] ?? 5000);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 8);
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 16);

interface Figures {
  readonly rps: number;
  readonly p99ms: number;
  readonly errors: number;
}

function csv(n: number): string {
  const lines = ['mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password'];
  for (let i = 0; i < n; i++) {
    const b = [(i >> 16) & 255, (i >> 8) & 255, i & 255].map((x) => x.toString(16).padStart(2, '0')).join(':');
    const role = i % 50 === 0 ? 'loadbalancer' : i % 50 < 4 ? 'control-plane' : 'worker';
    lines.push(`52:54:10:${b},node-${i},${role},bench,10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255},r${Math.floor(i / 40)},10.200.${(i >> 8) & 255}.${i & 255},admin,bmc-${i}`);
  }
  return lines.join('\n') + '\n';
}

function ms(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

async function wrk(url: string, script: string): Promise<Figures> {
  const { stdout } = await run('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', '--timeout', '10s', '-s', script, url], { maxBuffer: 1 << 20 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const p99 = ms(/^\s+99%\s+(\S+)/m.exec(stdout)?.[1] ?? '');
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  if (!Number.isFinite(rps) || !Number.isFinite(p99)) throw new Error(`cannot read wrk's output:\n${stdout}`);
  return { rps, p99ms: p99, errors };
}

async function startNginx(root: string, work: string): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const conf = join(work, 'nginx.conf');
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(work, d), { recursive: true });
  writeFileSync(
    conf,
    `daemon off;
worker_processes 1;
pid ${join(work, 'nginx.pid')};
error_log ${join(work, 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${join(work, 'client_body')};
  proxy_temp_path ${join(work, 'proxy')};
  fastcgi_temp_path ${join(work, 'fastcgi')};
  uwsgi_temp_path ${join(work, 'uwsgi')};
  scgi_temp_path ${join(work, 'scgi')};
  keepalive_requests 1000000;
  default_type application/json;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location / { try_files $uri =404; }
  }
}
`,
  );
  const child = spawn('nginx', ['-p', work, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/machines.json`);
      await r.arrayBuffer();
      if (r.ok) return { port, child };
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error('nginx did not start');
}

/** The floor any Express handler stands on: the same bytes, already in memory, via res.send. */
async function startExpressPeer(root: string): Promise<{ port: number; server: Server }> {
  const app = express();
  app.set('etag', false); // as in racksmith: hashing 2.5 MB per reply would not be the floor
  const bodies = new Map<string, Buffer>();
  for (const f of ['machines.json', 'page.json', 'machine.json']) bodies.set(f, readFileSync(join(root, f)));
  app.get('/:file', (req, res) => {
    const body = bodies.get(String(req.params['file']));
    if (!body) return void res.status(404).end();
    res.type('application/json').send(body);
  });
  const port = await freePort();
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(port, '127.0.0.1', () => resolve(s));
  });
  return { port, server };
}

async function coldList(base: string, token: string, mac: string): Promise<{ runs: number; median: number; max: number }> {
  const times: number[] = [];
  const runs = 20;
  for (let i = 0; i < runs; i++) {
    const w = await api(base, token, 'PATCH', `/api/v1/machines/${mac}`, { rack: `cold${i % 2}` });
    if (w.status !== 200) throw new Error(w.text);
    const t0 = performance.now();
    const r = await fetch(`${base}/api/v1/machines`, { headers: { authorization: `Bearer ${token}` } });
    await r.arrayBuffer();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { runs, median: times[Math.floor(runs / 2)] ?? Number.NaN, max: times[runs - 1] ?? Number.NaN };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'racksmith-bench-'));
  chmodSync(work, 0o755); // nginx's worker runs as an unprivileged user
  const rs = await startRacksmith({ env: { RACKSMITH_LOG_LEVEL: 'warn' } });
  let nginx: ChildProcess | undefined;
  let expressServer: Server | undefined;
  try {
    const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
    const c = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'bench', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'calico' });
    if (c.status !== 201) throw new Error(c.text);
    const t0 = Date.now();
    const imported = await api(rs.url, admin, 'POST', '/api/v1/machines/import', csv(MACHINES), 'text/csv');
    if (imported.status !== 201) throw new Error(imported.text.slice(0, 500));
    const importMs = Date.now() - t0;

    const mac = '52:54:10:00:09:c4';
    const targets = [
      { name: 'GET /machines', path: '/api/v1/machines', file: 'machines.json' },
      { name: 'GET /machines?limit=100', path: '/api/v1/machines?limit=100', file: 'page.json' },
      { name: 'GET /machines/{mac}', path: `/api/v1/machines/${mac}`, file: 'machine.json' },
    ];
    const root = join(work, 'www');
    mkdirSync(root);
    chmodSync(root, 0o755);
    for (const t of targets) {
      const r = await api(rs.url, admin, 'GET', t.path);
      if (r.status !== 200) throw new Error(`${t.path}: ${r.status} ${r.text.slice(0, 300)}`);
      writeFileSync(join(root, t.file), r.text);
      Object.assign(t, { bytes: Buffer.byteLength(r.text) });
    }
    const lua = join(work, 'auth.lua');
    writeFileSync(lua, `wrk.headers["Authorization"] = "Bearer ${admin}"\n`);
    const started = await startNginx(root, join(work, 'nginx'));
    nginx = started.child;

    const express = await startExpressPeer(root);
    expressServer = express.server;

    const rows: string[] = [];
    for (const t of targets) {
      const ours = await wrk(`${rs.url}${t.path}`, lua);
      const peer = await wrk(`http://127.0.0.1:${started.port}/${t.file}`, lua);
      const floor = await wrk(`http://127.0.0.1:${express.port}/${t.file}`, lua);
      rows.push(
        [
          t.name.padEnd(26),
          String((t as { bytes?: number }).bytes ?? 0).padStart(9),
          ours.rps.toFixed(0).padStart(8),
          ours.p99ms.toFixed(1).padStart(7),
          peer.rps.toFixed(0).padStart(8),
          peer.p99ms.toFixed(1).padStart(7),
          floor.rps.toFixed(0).padStart(8),
          (ours.rps / peer.rps).toFixed(3).padStart(9),
          (ours.rps / floor.rps).toFixed(3).padStart(11),
          ours.errors || peer.errors || floor.errors ? `  errors: ${ours.errors}/${peer.errors}/${floor.errors}` : '',
        ].join(' '),
      );
    }

    // The list right after a write: nothing to reuse, every row read and encoded again.
    const cold = await coldList(rs.url, admin, mac);
    process.stdout.write(
      `racksmith API benchmark: ${MACHINES} machines (one CSV import: ${importMs} ms), wrk -t1 -c${CONNECTIONS} -d${SECONDS}s\n` +
        `peers on the same bodies: nginx 1 worker (static files), Express 5 res.send (a Buffer in memory)\n` +
        `${'route'.padEnd(26)} ${'bytes'.padStart(9)} ${'req/s'.padStart(8)} ${'p99 ms'.padStart(7)} ${'nginx'.padStart(8)} ${'p99 ms'.padStart(7)} ${'express'.padStart(8)} ${'vs nginx'.padStart(9)} ${'vs express'.padStart(11)}\n` +
        rows.join('\n') +
        `\nGET /machines right after a write (no reuse possible), ${cold.runs} runs one at a time: median ${cold.median.toFixed(1)} ms, max ${cold.max.toFixed(1)} ms\n`,
    );
  } finally {
    nginx?.kill('SIGTERM');
    expressServer?.close();
    await rs.stop();
    rs.cleanup();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
