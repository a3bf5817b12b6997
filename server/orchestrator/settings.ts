import { join } from 'node:path';
import type { Config } from '../config/settings.js';
import { TOKEN_TTL_MS } from './kubeadm-config.js';
import type { OrchestratorSettings } from './service.js';

/** Uploaded control-plane certificates are deleted after two hours (kubeadm-init.md). */
export const CERT_UPLOAD_TTL_MS = 2 * 3600_000;
/** A join started this close to the token's end could outlive it. */
const TOKEN_MARGIN_MS = 3600_000;

/** The orchestrator's settings from the one config table. */
export function orchestratorSettings(config: Config): OrchestratorSettings {
  return {
    sshUser: config.sshUser,
    sshPort: config.sshPort,
    connectTimeoutMs: config.sshConnectTimeoutSeconds * 1000,
    stepTimeoutMs: config.orchestratorStepTimeoutSeconds * 1000,
    nodesReadyTimeoutMs: config.orchestratorNodesReadyTimeoutSeconds * 1000,
    nodesReadyPollMs: 2000,
    drainTimeoutMs: config.orchestratorDrainTimeoutSeconds * 1000,
    attempts: config.orchestratorAttempts,
    retryDelayMs: config.orchestratorRetryDelayMs,
    retryMaxDelayMs: 60_000,
    cniManifests: { weave: config.cniManifestWeave, flannel: config.cniManifestFlannel, calico: config.cniManifestCalico },
    imageRepository: config.kubernetesImageRepository,
    outputLines: 20,
    snapshots: { dir: join(config.dataDir, 'clusters'), keep: config.etcdSnapshotsKept },
    upgradeMaxUnavailable: config.upgradeMaxUnavailable,
    pollMs: config.orchestratorPollSeconds * 1000,
    lockTtlMs: config.orchestratorLockSeconds * 1000,
    limits: {
      workerConcurrency: config.orchestratorWorkerConcurrency,
      certUploadMaxAgeMs: CERT_UPLOAD_TTL_MS - config.orchestratorCertMarginMinutes * 60_000,
      tokenMaxAgeMs: TOKEN_TTL_MS - TOKEN_MARGIN_MS,
    },
  };
}
