import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fillTemplate, TEMPLATE_PATH } from '../../server/artifacts/nginx-front.js';
import { stopChild } from './child.js';

/**
 * Debian's nginx as a peer for tests and benchmarks: one master, `workers` worker processes, its
 * pid, temp and log files in a private directory, the given server blocks in its http context.
 * Started as root, its workers run as `nobody`: what they serve must be readable by others.
 */
export interface Nginx {
  readonly child: ChildProcess;
  /** The error log so far (what nginx said about refused or failed requests). */
  errorLog(): string;
  stop(): Promise<void>;
}

export interface NginxOptions {
  readonly dir: string;
  readonly servers: string;
  readonly workers?: number;
  /** A command that runs nginx (benchmarks pin it to a CPU with `taskset -c 0`). */
  readonly wrap?: readonly string[];
  /** A URL that answers (any status) once nginx listens. */
  readonly readyUrl: string;
}

export async function startNginx(o: NginxOptions): Promise<Nginx> {
  mkdirSync(o.dir, { recursive: true });
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${join(o.dir, t)};`).join(' ');
  const conf = join(o.dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
worker_processes ${o.workers ?? 1};
pid ${join(o.dir, 'nginx.pid')};
error_log ${join(o.dir, 'error.log')} warn;
events { worker_connections 1024; }
http {
  default_type application/octet-stream;
  access_log off;
  keepalive_requests 1000000;
  ${temp}
${o.servers}
}
`,
  );
  const argv = [...(o.wrap ?? []), 'nginx', '-p', o.dir, '-c', conf];
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const errorLog = (): string => {
    try {
      return readFileSync(join(o.dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  for (let i = 0; i < 100 && child.exitCode === null; i++) {
    try {
      await (await fetch(o.readyUrl, { signal: AbortSignal.timeout(1000) })).arrayBuffer();
      return { child, errorLog, stop: () => stopChild(child) };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await stopChild(child);
  throw new Error(`nginx did not start: ${stderr}${errorLog()}`);
}

/** The shipped artifacts front (packaging/nginx/racksmith-artifacts.conf.template), filled in. */
export function artifactsFrontConfig(vars: { ARTIFACTS_LISTEN: string; RACKSMITH_UPSTREAM: string; ARTIFACTS_DIR: string; ARTIFACTS_CACHE_DIR: string }): string {
  return fillTemplate(readFileSync(TEMPLATE_PATH, 'utf8'), vars);
}
