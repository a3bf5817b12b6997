import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { buildDeb } from './debs.js';
import { buildDistsRepo, buildFlatRepo, debsIn, Keyring, type SigningKey } from './mirror.js';
import { dockerPackages, dockerRelease, kubernetesMinor, kubernetesPackages, newerDockerRelease, newerPatch, type DockerRelease } from './standins.js';

/**
 * The package mirror a site would run for racksmith, built for one test run: each upstream under
 * a folder named after its host, so racksmith's repository settings point at it exactly as they
 * would at a site's mirror (`RACKSMITH_DOCKER_REPO=http://mirror/download.docker.com/linux/ubuntu`).
 *
 *   ubuntu/                                 the Ubuntu archive (Debian's real haproxy, containerd…)
 *   download.docker.com/linux/ubuntu/       docker-ce, docker-ce-cli, containerd.io; `gpg` key
 *   apt.kubernetes.io/                      legacy `kubernetes-xenial main` (< 1.24)
 *   packages.cloud.google.com/apt/doc/apt-key.gpg   its key (binary, as upstream served it)
 *   pkgs.k8s.io/core:/stable:/v1.MINOR/deb/ flat `/` repositories, each with Release.key
 *
 * Kubernetes repositories hold the pinned release and a newer patch release, and Docker's holds a
 * newer Docker CE beside the pinned one, so an install that forgot a pin would get the newer one
 * and fail the version check.
 */
export interface MirrorPlan {
  /** Ubuntu codenames whose archive is served (the suites the installer wrote into sources.list). */
  readonly ubuntuSuites: readonly string[];
  /** Docker suites to serve (the codename the machine reports) and whose Ubuntu release's versions they hold. */
  readonly dockerSuites: ReadonlyArray<{ readonly suite: string; readonly ubuntu: string }>;
  /** Kubernetes versions (x.y.z) for the legacy repository. */
  readonly legacyKubernetes: readonly string[];
  /** Kubernetes versions (x.y.z) for pkgs.k8s.io; one repository per minor. */
  readonly kubernetes: readonly string[];
}

export interface SiteMirror {
  readonly www: string;
  readonly keys: { readonly ubuntu: SigningKey; readonly docker: SigningKey; readonly kubernetesLegacy: SigningKey; readonly kubernetes: SigningKey };
  /** racksmith's repository settings for a mirror served at `base` (e.g. `http://10.1.0.1:8081`). */
  settings(base: string): Record<string, string>;
  /** The sources.list an Ubuntu installer would have left, pointing at this mirror. */
  ubuntuSources(base: string, codename: string): string;
}

export const UBUNTU_COMPONENTS = ['main', 'restricted', 'universe', 'multiverse'] as const;

export async function buildSiteMirror(workDir: string, debianDebs: string, plan: MirrorPlan): Promise<SiteMirror> {
  const www = join(workDir, 'www');
  const built = join(workDir, 'debs');
  mkdirSync(www, { recursive: true });
  mkdirSync(built, { recursive: true });
  const keyring = Keyring.create(workDir);
  try {
    const keys = {
      ubuntu: await keyring.generate('ubuntu-archive'),
      docker: await keyring.generate('docker'),
      kubernetesLegacy: await keyring.generate('kubernetes-legacy'),
      kubernetes: await keyring.generate('kubernetes'),
    };
    const put = (rel: string, content: string | Buffer): void => {
      mkdirSync(dirname(join(www, rel)), { recursive: true });
      writeFileSync(join(www, rel), content);
    };

    const debian = debsIn(debianDebs);
    if (debian.length === 0) throw new Error(`no Debian packages in ${debianDebs}`);
    const empty = Object.fromEntries(UBUNTU_COMPONENTS.map((c) => [c, [] as string[]]));
    await buildDistsRepo(
      join(www, 'ubuntu'),
      plan.ubuntuSuites.flatMap((s) => [
        { suite: s, components: { ...empty, main: debian } },
        { suite: `${s}-updates`, components: empty },
        { suite: `${s}-security`, components: empty },
      ]),
      keys.ubuntu,
      keyring,
      'Ubuntu',
    );

    if (plan.dockerSuites.length > 0) {
      const suites = [];
      for (const { suite, ubuntu } of plan.dockerSuites) {
        const dir = join(built, `docker-${ubuntu}`);
        mkdirSync(dir, { recursive: true });
        const releases = [dockerRelease(ubuntu), newerDockerRelease(ubuntu)].filter((r): r is DockerRelease => r !== null);
        suites.push({ suite, components: { stable: await Promise.all(releases.flatMap((r) => dockerPackages(ubuntu, r)).map((p) => buildDeb(p, dir))) } });
      }
      await buildDistsRepo(join(www, 'download.docker.com/linux/ubuntu'), suites, keys.docker, keyring, 'Docker');
      put('download.docker.com/linux/ubuntu/gpg', keys.docker.armored);
    }

    if (plan.legacyKubernetes.length > 0) {
      const dir = join(built, 'kubernetes-legacy');
      mkdirSync(dir, { recursive: true });
      const debs: string[] = [];
      for (const v of plan.legacyKubernetes) for (const release of [v, newerPatch(v)]) debs.push(...(await Promise.all(kubernetesPackages(release, 'legacy').map((p) => buildDeb(p, dir)))));
      await buildDistsRepo(join(www, 'apt.kubernetes.io'), [{ suite: 'kubernetes-xenial', components: { main: [...new Set(debs)] } }], keys.kubernetesLegacy, keyring, 'kubernetes-xenial');
      put('packages.cloud.google.com/apt/doc/apt-key.gpg', keys.kubernetesLegacy.binary);
    }

    const minors = new Map<string, string[]>();
    for (const v of plan.kubernetes) minors.set(kubernetesMinor(v), [...(minors.get(kubernetesMinor(v)) ?? []), v]);
    for (const [minor, versions] of minors) {
      const dir = join(built, `kubernetes-${minor}`);
      mkdirSync(dir, { recursive: true });
      const debs: string[] = [];
      for (const v of versions) for (const release of [v, newerPatch(v)]) debs.push(...(await Promise.all(kubernetesPackages(release, 'pkgs').map((p) => buildDeb(p, dir)))));
      const repo = `pkgs.k8s.io/core:/stable:/v${minor}/deb`;
      await buildFlatRepo(join(www, repo), [...new Set(debs)], keys.kubernetes, keyring, `obs://build.opensuse.org/isv:kubernetes:core:stable:v${minor}/deb`);
      put(`${repo}/Release.key`, keys.kubernetes.armored);
    }

    return {
      www,
      keys,
      settings: (base) => ({
        RACKSMITH_UBUNTU_MIRROR: `${base}/ubuntu`,
        RACKSMITH_KUBERNETES_REPO: `${base}/pkgs.k8s.io/core:/stable:`,
        RACKSMITH_KUBERNETES_LEGACY_REPO: `${base}/apt.kubernetes.io/`,
        RACKSMITH_KUBERNETES_LEGACY_GPG_URL: `${base}/packages.cloud.google.com/apt/doc/apt-key.gpg`,
        RACKSMITH_DOCKER_REPO: `${base}/download.docker.com/linux/ubuntu`,
        RACKSMITH_DOCKER_GPG_URL: `${base}/download.docker.com/linux/ubuntu/gpg`,
      }),
      ubuntuSources: (base, codename) =>
        [`${codename}`, `${codename}-updates`, `${codename}-security`].map((s) => `deb ${base}/ubuntu ${s} ${UBUNTU_COMPONENTS.join(' ')}`).join('\n') + '\n',
    };
  } finally {
    await keyring.close();
  }
}
