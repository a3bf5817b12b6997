import type { Config } from '../config/settings.js';
import type { PreflightSettings } from './preflight.js';

/**
 * The preflight's settings from the one config table: the upstreams the seeds name. With an apt
 * proxy (`--apt-proxy`, which every seed carries) the checks of apt repositories go through it,
 * as the nodes' apt will.
 */
export function preflightSettings(config: Config): PreflightSettings {
  return {
    ubuntuMirror: config.ubuntuMirror,
    debianMirror: config.debianMirror,
    kubernetesRepo: config.kubernetesRepo,
    kubernetesLegacyRepo: config.kubernetesLegacyRepo,
    kubernetesLegacyGpgUrl: config.kubernetesLegacyGpgUrl,
    dockerRepo: config.dockerRepo,
    dockerGpgUrl: config.dockerGpgUrl,
    cniManifests: { weave: config.cniManifestWeave, flannel: config.cniManifestFlannel, calico: config.cniManifestCalico },
    aptProxy: config.aptProxy ?? null,
  };
}
