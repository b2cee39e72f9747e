import type { CertificatePair } from '../certs/certificate-pair.js';
import type { ListenerStrategy } from '../threads/listener-strategy.js';
import { VERSION } from '../version.js';
import { sendJson, type EngineApi } from './engine-api.js';
import type { TemplatedApp } from './uws.js';

export const ENGINE_INFO_PATH = '/rivulet/v1/engine';

export interface EngineInfoSources {
  startedAt: Date;
  workers: number;
  listenerStrategy: ListenerStrategy;
  /** The certificate served now (it may have been reloaded since start). */
  certificate: () => CertificatePair;
}

/**
 * `GET /rivulet/v1/engine` (docs/engine-api.md#the-engine): what the dashboard's engine panel shows —
 * version, runtime, uptime, workers, listener strategy, the certificate served and its expiry. Same
 * token and permission as the API.
 */
export class EngineInfo {
  constructor(
    private readonly api: EngineApi,
    private readonly sources: EngineInfoSources,
  ) {}

  register(app: TemplatedApp): void {
    app.any(ENGINE_INFO_PATH, (res, req) => {
      const request = this.api.readRequest(req);
      if (this.api.admitReader(res, request)) sendJson(res, request, JSON.stringify(this.describe()));
    });
  }

  describe(): Record<string, unknown> {
    const { startedAt, workers, listenerStrategy, certificate } = this.sources;
    const served = certificate();
    return {
      version: VERSION,
      node: process.version,
      started_at: startedAt.toISOString(),
      uptime_seconds: Math.floor((Date.now() - startedAt.getTime()) / 1000),
      workers,
      listener_strategy: listenerStrategy,
      certificate: { subject: served.subject, subject_alt_name: served.subjectAltName, not_after: served.notAfter.toISOString() },
    };
  }
}
