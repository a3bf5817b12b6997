/**
 * What an image file is, from its first bytes (never from its name: Ubuntu's cloud images are
 * qcow2 named `.img`). Compressed raw images go to the machine as they are — the deploy agent's
 * zstd reads zstd, gzip and xz — and anything qemu-img knows by a header of its own is converted
 * to raw by racksmith, once.
 */
export const IMAGE_FORMATS = ['raw', 'gz', 'xz', 'zst', 'qcow2', 'vmdk', 'vhdx', 'vdi'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/** Formats the deploy agent writes as they come. */
export const STREAMABLE: readonly ImageFormat[] = ['raw', 'gz', 'xz', 'zst'];

const MAGIC: readonly (readonly [ImageFormat, number, readonly number[]])[] = [
  ['gz', 0, [0x1f, 0x8b]],
  ['xz', 0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zst', 0, [0x28, 0xb5, 0x2f, 0xfd]],
  // QEMU's qcow2 header: "QFI\xfb" (docs/interop/qcow2.txt).
  ['qcow2', 0, [0x51, 0x46, 0x49, 0xfb]],
  // VMware's sparse extent header "KDMV".
  ['vmdk', 0, [0x4b, 0x44, 0x4d, 0x56]],
  ['vhdx', 0, [...Buffer.from('vhdxfile')]],
  // VirtualBox: the signature word at 0x40.
  ['vdi', 0x40, [0x7f, 0x10, 0xda, 0xbe]],
];

/** The format of an image from its first 512 bytes (or fewer, for a tiny file). */
export function sniffImageFormat(head: Uint8Array): ImageFormat {
  for (const [format, at, bytes] of MAGIC) {
    if (head.length >= at + bytes.length && bytes.every((b, i) => head[at + i] === b)) return format;
  }
  return 'raw';
}

/** `debian-12-generic-amd64.qcow2` → `debian-12-generic-amd64`: the name of its raw conversion. */
export function baseName(file: string): string {
  return file.replace(/\.(qcow2|img|raw|vmdk|vhdx|vdi)$/i, '');
}
