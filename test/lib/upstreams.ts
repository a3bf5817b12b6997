import { createServer, type Server } from 'node:http';
import { NO_UPSTREAM, offlineUpstreams } from './racksmith.js';

/**
 * Every upstream a cluster's seeds use, present: for suites about something else (an upgrade, a
 * bootstrap) whose flow runs the preflight on the way. A suite's `Release` file, and for each
 * Packages index the pinned package names at the versions asked for; any other path (an installer
 * artifact, a signing key, a CNI manifest) answers 200. test/preflight.test.ts covers what is
 * missing or broken.
 */
export interface OpenUpstream {
  /** racksmith's upstream settings, pointing here (offlineUpstreams with this server's address). */
  readonly env: Record<string, string>;
  readonly base: string;
  stop(): Promise<void>;
}

const K8S_PACKAGES = ['kubelet', 'kubeadm', 'kubectl', 'cri-tools', 'kubernetes-cni'];
const DOCKER_PACKAGES = ['docker-ce', 'docker-ce-cli', 'containerd.io'];

function release(): string {
  return ['Origin: Test', 'Suite: test', 'Date: Mon, 01 Jan 2024 00:00:00 UTC', 'Architectures: amd64 arm64', 'SHA256:', ` ${'0'.repeat(64)} 1 Packages`].join('\n') + '\n';
}

function stanzas(names: readonly string[], versions: readonly string[]): string {
  return names.flatMap((p) => versions.map((v) => `Package: ${p}\nVersion: ${v}\nArchitecture: amd64\n`)).join('\n');
}

/** `kubernetesVersions`: the exact versions (e.g. 1.30.2) whose packages the Kubernetes index lists. */
export async function startOpenUpstream(kubernetesVersions: readonly string[], dockerVersions: readonly string[] = []): Promise<OpenUpstream> {
  const k8s = kubernetesVersions.flatMap((v) => [`${v}-1.1`, `${v}-00`]);
  const docker = dockerVersions.flatMap((v) => [`5:${v}~3-0~ubuntu-bionic`, `5:${v}-1~ubuntu.22.04~jammy`, `${v}-1`]);
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    let body = 'present\n';
    if (/\/(In)?Release$/.test(path)) body = release();
    else if (/\/Packages$/.test(path)) body = /docker/.test(path) ? stanzas(DOCKER_PACKAGES, docker) : stanzas(K8S_PACKAGES, k8s);
    else if (/\/Packages\.gz$/.test(path)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': String(Buffer.byteLength(body)) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const env = Object.fromEntries(Object.entries(offlineUpstreams()).map(([k, v]) => [k, v.split(NO_UPSTREAM).join(base)]));
  return {
    env,
    base,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
