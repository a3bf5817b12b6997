import type { Config } from '../config/settings.js';
import type { PreflightSettings } from './preflight.js';

/**
 * The preflight's settings from the one config table: the upstreams the seeds name. The apt proxy
 * the seeds will carry is added where that setting exists (`aptProxy`): the checks of apt
 * repositories then go through it, as the nodes' apt will.
 */
export function preflightSettings(config: Config): PreflightSettings {
  return {
    ubuntuMirror: config.ubuntuMirror,
    kubernetesRepo: config.kubernetesRepo,
    kubernetesLegacyRepo: config.kubernetesLegacyRepo,
    kubernetesLegacyGpgUrl: config.kubernetesLegacyGpgUrl,
    dockerRepo: config.dockerRepo,
    dockerGpgUrl: config.dockerGpgUrl,
    cniManifests: { weave: config.cniManifestWeave, flannel: config.cniManifestFlannel, calico: config.cniManifestCalico },
  };
}
