import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { buildDeb, type DebFile, type DebSpec } from '../test/lib/cloudinit/debs.js';
import { buildFlatRepo, Keyring } from '../test/lib/cloudinit/mirror.js';
import { kubernetesMinor, kubernetesPackages } from '../test/lib/cloudinit/standins.js';

/**
 * The virtual rack's Kubernetes repository when its machines run real Debian (image
 * deployment): pkgs.k8s.io's layout (`/core:/stable:/v1.MINOR/deb/`, a signed flat repository
 * and its Release.key) holding the test repository's stand-in packages — kubernetes-cni,
 * cri-tools, kubelet as the cloud-init test builds them — with kubeadm and kubectl running the
 * virtual rack's stand-in (test/fixtures/kubeadm-standin) on Debian's Node.js, so the
 * orchestrator's init, joins and checks go through it as on the test guest's rack.
 */
const STANDIN_DIST = fileURLToPath(new URL('../test/fixtures/kubeadm-standin/', import.meta.url));
const STANDIN_FILES = ['standin.js', 'remote.js', 'apiserver.js'];
const LIB = '/usr/lib/racksmith-standin';

/** Every file under `root`, to be installed under `under`. */
function tree(root: string, under: string, dir = root): DebFile[] {
  const out: DebFile[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...tree(root, under, p));
    else out.push({ path: `${under}/${relative(root, p)}`, content: readFileSync(p, 'utf8') });
  }
  return out;
}

/** The wrapper the orchestrator runs as kubeadm/kubectl: the stand-in with this node's identity. */
function wrapper(tool: string, version: string, serverIp: string): string {
  return `#!/bin/sh
# ${tool} stand-in (racksmith's virtual rack): the rack's kubeadm/kubectl stand-in on Node.js.
STANDIN_NODE=$(hostname)
STANDIN_NODE_IP=$(ip -4 -o route get ${serverIp} | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p')
STANDIN_NODE_DIR=/var/lib/standin
STANDIN_VERSION=${version}
export STANDIN_NODE STANDIN_NODE_IP STANDIN_NODE_DIR STANDIN_VERSION
mkdir -p /var/lib/standin
exec node ${LIB}/standin.js ${tool} "$@"
`;
}

export interface StandinRepo {
  /** The folder to serve: the repository sits at `<www>/pkgs.k8s.io/core:/stable:/v1.MINOR/deb/`. */
  readonly www: string;
  /** racksmith's setting for a repository served at `base`. */
  settings(base: string): Record<string, string>;
}

export async function buildStandinRepo(workDir: string, version: string, serverIp: string): Promise<StandinRepo> {
  const missing = STANDIN_FILES.filter((f) => {
    try {
      statSync(join(STANDIN_DIST, f));
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length) throw new Error(`the kubeadm stand-in is not built (${missing.join(', ')}): run npm run build`);
  const www = join(workDir, 'www');
  const debs = join(workDir, 'debs');
  mkdirSync(debs, { recursive: true });
  const yamlDir = join(PACKAGE_ROOT, 'node_modules', 'yaml');
  const runtime: DebFile[] = [
    ...STANDIN_FILES.map((f) => ({ path: `${LIB}/${f}`, content: readFileSync(join(STANDIN_DIST, f), 'utf8') })),
    { path: `${LIB}/package.json`, content: '{"type":"module","private":true}\n' },
    { path: `${LIB}/node_modules/yaml/package.json`, content: readFileSync(join(yamlDir, 'package.json'), 'utf8') },
    ...tree(join(yamlDir, 'dist'), `${LIB}/node_modules/yaml/dist`),
  ];
  const specs: DebSpec[] = kubernetesPackages(version, 'pkgs').map((p) => {
    if (p.name === 'kubeadm') {
      return { ...p, depends: [...(p.depends ?? []), 'nodejs (>= 18)', 'openssl'], files: [...p.files.filter((f) => f.path !== '/usr/bin/kubeadm'), { path: '/usr/bin/kubeadm', content: wrapper('kubeadm', version, serverIp), mode: 0o755 }, ...runtime] };
    }
    if (p.name === 'kubectl') {
      return { ...p, depends: ['nodejs (>= 18)', 'kubeadm'], files: [{ path: '/usr/bin/kubectl', content: wrapper('kubectl', version, serverIp), mode: 0o755 }] };
    }
    return p;
  });
  const built = await Promise.all(specs.map((s) => buildDeb(s, debs)));
  const keyring = Keyring.create(workDir);
  try {
    const key = await keyring.generate('kubernetes');
    const repo = `pkgs.k8s.io/core:/stable:/v${kubernetesMinor(version)}/deb`;
    await buildFlatRepo(join(www, repo), built, key, keyring, `obs://build.opensuse.org/isv:kubernetes:core:stable:v${kubernetesMinor(version)}/deb`);
    writeFileSync(join(www, repo, 'Release.key'), key.armored);
  } finally {
    await keyring.close();
  }
  return { www, settings: (base) => ({ RACKSMITH_KUBERNETES_REPO: `${base}/pkgs.k8s.io/core:/stable:` }) };
}
