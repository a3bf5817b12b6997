import type { ImageOverrides } from '../config/settings.js';
import type { Cluster } from '../inventory/model.js';
import type { OsId } from '../inventory/os.js';

/**
 * Which OS image a cluster's machines get by image deployment: the cluster's own
 * (`imageUrl`/`imageSha256`), else the `images` setting's for its OS, else the distribution's
 * cloud image below. A source is an http(s) URL or a file name in the artifacts directory's
 * `images/` folder; a file of the URL's name there is used instead of downloading it.
 *
 * The defaults are the distributions' published cloud images, latest build: Debian's `generic`
 * image (the `genericcloud` one has a kernel without most hardware drivers), Ubuntu's
 * `server-cloudimg` (qcow2 despite its `.img` name). They have no pinned checksum — pin one in
 * the settings or the cluster to have racksmith refuse anything else.
 */
export interface ImageSpec {
  readonly source: string;
  readonly sha256: string | null;
}

export const DEFAULT_IMAGES: Readonly<Record<OsId, string>> = {
  'ubuntu-18.04': 'https://cloud-images.ubuntu.com/releases/bionic/release/ubuntu-18.04-server-cloudimg-amd64.img',
  'ubuntu-20.04': 'https://cloud-images.ubuntu.com/releases/focal/release/ubuntu-20.04-server-cloudimg-amd64.img',
  'ubuntu-22.04': 'https://cloud-images.ubuntu.com/releases/jammy/release/ubuntu-22.04-server-cloudimg-amd64.img',
  'ubuntu-24.04': 'https://cloud-images.ubuntu.com/releases/noble/release/ubuntu-24.04-server-cloudimg-amd64.img',
  'debian-12': 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2',
};

export function imageFor(cluster: Pick<Cluster, 'os' | 'imageUrl' | 'imageSha256'>, settings: ImageOverrides | undefined): ImageSpec {
  if (cluster.imageUrl) return { source: cluster.imageUrl, sha256: cluster.imageSha256 };
  const configured = settings?.[cluster.os];
  if (configured) return { source: configured.url, sha256: cluster.imageSha256 ?? configured.sha256 ?? null };
  return { source: DEFAULT_IMAGES[cluster.os], sha256: cluster.imageSha256 };
}
