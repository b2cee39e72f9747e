import crypto from 'node:crypto';
import type http from 'node:http';
import { EngineApi } from '../api/engine-api.js';
import { ApiRequestCounts } from '../api/request-counts.js';
import { EventHub } from '../api/event-hub.js';
import { EventStreams } from '../api/event-streams.js';
import { InternalApiServer } from '../api/internal-server.js';
import { buildOpenApiDocument } from '../api/openapi.js';
import { TokenVerifier } from './auth.js';
import { buildMetricsRegistry } from '../metrics/collectors.js';
import { MetricsServer } from '../metrics/metrics-server.js';
import { formatListenAddress } from '../config/address.js';
import type { EngineConfig } from '../config/load.js';
import type { CertificatePair } from '../certs/certificate-pair.js';
import { createCertCheckGate } from '../certs/check-gate.js';
import { StaticCertificateProvider } from '../certs/static-provider.js';
import type { Logger } from '../log.js';
import { CounterTable, createCounterBuffer } from '../metrics/counters.js';
import { AFFINITY_BIND_ERROR } from '../dataplane/listener.js';
import { ControlPlane } from './control-plane.js';
import { createStreamSlotBuffer } from './stream-slots.js';
import { startRedirectListener } from './http-redirect.js';
import type { DataplaneSettings } from './thread-messages.js';
import { WorkerSupervisor } from './worker-supervisor.js';

/** Established connections get this long to finish after SIGTERM (docs/operations.md#shut-down). */
export const SHUTDOWN_DRAIN_MS = 10_000;

/** A listener could not bind: `listen error: <key> "<addr>": <code>` (exit 1). */
export class ListenError extends Error {
  override name = 'ListenError';
}

export interface RunningEngine {
  readonly config: EngineConfig;
  /** The port the TLS listener bound (the public port). */
  readonly publicPort: number;
  readonly httpPort: number | undefined;
  /** The Prometheus listener's port, when metrics are enabled. */
  readonly metricsPort: number | undefined;
  readonly counters: CounterTable;
  readonly certificates: StaticCertificateProvider;
  readonly supervisor: WorkerSupervisor;
  readonly control: ControlPlane;
  /** The Unix socket the Engine API listens on now. */
  readonly apiSocketPath: string;
  /** Stops accepting, drains for up to `drainMs`, stops the workers; safe to call twice. */
  shutdown(drainMs?: number): Promise<void>;
}

/**
 * Starts the engine in this order: certificate, workers on the TLS listener, then the
 * HTTP redirect listener, then one `ready` line. Throws CertificateError or ListenError on failure,
 * after releasing whatever had started.
 */
export async function startEngine(
  config: EngineConfig,
  log: Logger,
  onFatal: (reason: string) => void,
): Promise<RunningEngine> {
  let supervisor: WorkerSupervisor | undefined;
  const certificates = await StaticCertificateProvider.open({
    certFile: config.certs.static.cert_file,
    keyFile: config.certs.static.key_file,
    engineHost: config.engine.host,
    log,
    onReload: (pair: CertificatePair) => supervisor?.broadcastCertificate(pair),
  });

  const counterBuffer = createCounterBuffer(config.dataplane.workers);
  const streamSlots = createStreamSlotBuffer();
  const control = new ControlPlane(
    config,
    log,
    { broadcast: (message) => supervisor?.broadcast(message) },
    () => supervisor!.port,
    streamSlots,
  );
  let openApiDocument: string | undefined;
  const apiRequests = new ApiRequestCounts();
  const engineApi = new EngineApi({
    log,
    requestCounts: apiRequests,
    engineHost: config.engine.host,
    registry: control.registry,
    verifier: new TokenVerifier(config.auth.jwt.token_jwt_secret),
    openApiDocument: () => (openApiDocument ??= JSON.stringify(buildOpenApiDocument(`${config.engine.host}:${supervisor!.port}`))),
  });
  const eventStreams = new EventStreams(engineApi, new EventHub(control.registry));
  const api = await InternalApiServer.start([eventStreams, engineApi]);
  supervisor = new WorkerSupervisor({
    config,
    log,
    certificate: () => certificates.current,
    counters: counterBuffer,
    certCheckGate: createCertCheckGate(),
    streamSlots,
    ticketKeys: crypto.randomBytes(48),
    apiSocketPath: () => api.socketPath,
    checkCertificate: () => certificates.check(),
    dataplane: dataplaneSettings(config),
    routes: () => control.routes(),
    onRequest: (worker, request) => control.handle(worker, request),
    onTunnelRoutable: (tunnelId) => control.tunnelRoutable(tunnelId),
    onWorkerLost: (worker) => control.workerLost(worker),
    onFatal,
  });

  let redirect: http.Server | undefined;
  let metrics: MetricsServer | undefined;
  const stopAll = async (): Promise<void> => {
    redirect?.close();
    metrics?.close();
    eventStreams.close();
    await supervisor.release();
    api.close();
  };

  let publicPort: number;
  try {
    publicPort = await supervisor.start();
  } catch (error) {
    await stopAll();
    const affinityPort = new RegExp(`${AFFINITY_BIND_ERROR} (\\d+)`).exec((error as Error).message)?.[1];
    if (affinityPort !== undefined) {
      const address = formatListenAddress({ host: config.tls.listen_addr.host, port: Number(affinityPort) });
      throw new ListenError(`listen error: dataplane.affinity.port_base "${address}": ${errorCode(error)}`);
    }
    const address = formatListenAddress(config.tls.listen_addr);
    throw new ListenError(`listen error: tls.listen_addr "${address}": ${errorCode(error)}`);
  }
  api.keepListening((socketPath) => {
    log.warn({ socket: socketPath }, 'the Engine API socket file was removed; listening on a new one');
    supervisor.broadcast({ type: 'api-socket', socketPath });
  });
  if (config.http.enabled && config.http.listen_addr) {
    try {
      redirect = await startRedirectListener(config.http.listen_addr, publicPort);
    } catch (error) {
      await stopAll();
      const address = formatListenAddress(config.http.listen_addr);
      throw new ListenError(`listen error: http.listen_addr "${address}": ${errorCode(error)}`);
    }
  }
  const counters = new CounterTable(counterBuffer, config.dataplane.workers);
  const prometheus = config.metrics.prometheus;
  if (prometheus.enabled && prometheus.listen_addr) {
    const registry = buildMetricsRegistry({
      counters,
      control,
      apiRequests,
      certificates,
      eventSubscribers: () => eventStreams.subscriberCounts(),
    });
    try {
      metrics = await MetricsServer.start({ address: prometheus.listen_addr, path: prometheus.path, bearerToken: prometheus.bearer_token, registry });
    } catch (error) {
      await stopAll();
      throw new ListenError(`listen error: metrics.prometheus.listen_addr "${formatListenAddress(prometheus.listen_addr)}": ${(error as Error).message}`);
    }
  }
  const redirectAddress = redirect?.address();
  const httpPort = typeof redirectAddress === 'object' && redirectAddress ? redirectAddress.port : undefined;

  log.info(
    {
      tls: formatListenAddress({ host: config.tls.listen_addr.host, port: publicPort }),
      http: httpPort === undefined ? undefined : formatListenAddress({ host: config.http.listen_addr!.host, port: httpPort }),
      public_port: publicPort,
      metrics: metrics ? formatListenAddress({ host: prometheus.listen_addr!.host, port: metrics.port }) : undefined,
      engine_host: config.engine.host,
      workers: supervisor.workerCount,
      listener_strategy: supervisor.strategy,
    },
    'ready',
  );

  let stopped: Promise<void> | undefined;
  return {
    config,
    publicPort,
    httpPort,
    metricsPort: metrics?.port,
    counters,
    certificates,
    supervisor,
    control,
    get apiSocketPath() {
      return api.socketPath;
    },
    shutdown(drainMs = SHUTDOWN_DRAIN_MS) {
      stopped ??= (async () => {
        log.info({ drain_ms: drainMs }, 'shutting down');
        control.beginShutdown();
        // Event-stream subscribers hold spliced connections: WebSocket 1001 and SSE end let them drain now.
        eventStreams.close();
        redirect?.close();
        metrics?.close();
        const deadline = Date.now() + drainMs;
        await supervisor.stopAccepting(deadline);
        log.info('stopped accepting; draining open connections');
        const cut = await supervisor.drained(deadline);
        await supervisor.release();
        api.close();
        log.info({ connections_cut: cut }, 'stopped');
      })();
      return stopped;
    },
  };
}

function dataplaneSettings(config: EngineConfig): DataplaneSettings {
  const affinity = config.dataplane.affinity;
  return {
    workers: config.dataplane.workers,
    streamRequestMs: config.timeouts.stream_request_seconds * 1000,
    httpIdleMs: config.timeouts.http_idle_seconds * 1000,
    httpRequestHeadMs: config.timeouts.http_request_head_seconds * 1000,
    httpRequestBodyIdleMs: config.timeouts.http_request_body_idle_seconds * 1000,
    httpResponseMs: config.timeouts.http_response_seconds * 1000,
    tokenSecret: config.auth.jwt.token_jwt_secret,
    maxConnections: config.dataplane.max_connections,
    maxStreamsPerTunnel: config.dataplane.max_streams_per_tunnel,
    affinity: affinity.enabled
      ? { portBase: affinity.port_base!, host: config.tls.listen_addr.host, advertiseHost: affinity.advertise_host }
      : undefined,
  };
}

/** The errno code of a bind failure; a worker's error crosses the thread boundary with its message only. */
function errorCode(error: unknown): string {
  const { code, message } = error as NodeJS.ErrnoException;
  return code ?? /\b(E[A-Z0-9]+)\b/.exec(message)?.[1] ?? message;
}
