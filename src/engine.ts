import crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { EngineApi } from './api/engine-api.js';
import { ApiRequestCounts } from './api/request-counts.js';
import { EventHub } from './api/event-hub.js';
import { TrafficStats } from './api/traffic-stats.js';
import { Dashboard } from './api/dashboard.js';
import { RequestLogApi } from './api/request-log.js';
import { EngineInfo } from './api/engine-info.js';
import { listenerStrategy } from './threads/listener-strategy.js';
import { EventStreams } from './api/event-streams.js';
import { InternalApiServer } from './api/internal-server.js';
import { buildOpenApiDocument } from './api/openapi.js';
import { TokenVerifier } from './auth/tokens.js';
import { buildMetricsRegistry } from './metrics/collectors.js';
import { MetricsServer } from './metrics/metrics-server.js';
import { formatListenAddress, type ListenAddress } from './config/address.js';
import type { EngineConfig } from './config/schema.js';
import type { CertificatePair } from './certs/certificate-pair.js';
import { createCertCheckGate } from './threads/cert-check-gate.js';
import { StaticCertificateProvider } from './certs/static-provider.js';
import type { Logger } from './log.js';
import { CounterTable, createCounterBuffer } from './threads/counters.js';
import { ControlPlane } from './control/control-plane.js';
import { createTunnelTables, type TunnelTables } from './threads/tunnel-stats.js';
import { startRedirectListener } from './control/http-redirect.js';
import type { DataplaneSettings, MainToWorker } from './threads/messages.js';
import { WorkerSupervisor } from './control/worker-supervisor.js';
import { ListenError, WorkerListenFailure } from './errors.js';

/** Established connections get this long to finish after SIGTERM (docs/operations.md#shut-down). */
export const SHUTDOWN_DRAIN_MS = 10_000;

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
  /** Event-stream subscribers now, by transport (what rivulet_event_subscribers reports). */
  eventSubscribers(): { sse: number; websocket: number };
  /** Stops accepting, drains for up to `drainMs`, stops the workers; safe to call twice. */
  shutdown(drainMs?: number): Promise<void>;
}

/**
 * Starts the engine in this order: certificate, Engine API, workers on the TLS listener, the HTTP
 * redirect listener, the metrics listener, then one `ready` line. Throws CertificateError or ListenError
 * on failure, after releasing whatever had started.
 */
export async function startEngine(
  config: EngineConfig,
  log: Logger,
  onFatal: (reason: string) => void,
): Promise<RunningEngine> {
  let supervisor: WorkerSupervisor | undefined;
  const publicPort = (): number => supervisor!.port;
  const certificates = await StaticCertificateProvider.open({
    certFile: config.certs.static.cert_file,
    keyFile: config.certs.static.key_file,
    engineHost: config.engine.host,
    log,
    onReload: (pair: CertificatePair) => supervisor?.broadcastCertificate(pair),
  });
  const counterBuffer = createCounterBuffer(config.dataplane.workers);
  const tunnelTables = createTunnelTables();
  const workerBus = {
    broadcast: (message: MainToWorker) => supervisor?.broadcast(message),
    requestLogs: (slot: number) => supervisor?.requestLogs(slot) ?? Promise.resolve([]),
  };
  const control = new ControlPlane(config, log, workerBus, publicPort, tunnelTables);
  const { apiRequests, eventStreams, api } = await startEngineApi(config, log, control, publicPort, () => certificates.current);
  supervisor = wiredSupervisor(config, log, onFatal, { certificates, counterBuffer, tunnelTables, control, apiSocketPath: () => api.socketPath });

  const started = await startListeners(config, log, { supervisor, control, api, eventStreams, apiRequests, certificates, counterBuffer });
  const { tlsPort, redirect, metrics, counters } = started;
  const httpPort = redirect ? (redirect.address() as AddressInfo).port : undefined;
  logReady(config, log, supervisor, { tlsPort, httpPort, metricsPort: metrics?.port });
  const stopGracefully = async (drainMs: number): Promise<void> => {
    log.info({ drain_ms: drainMs }, 'shutting down');
    control.beginShutdown();
    // Event-stream subscribers hold spliced connections: WebSocket 1001 and SSE end let them drain now.
    eventStreams.close();
    started.closeListeners();
    const deadline = Date.now() + drainMs;
    await supervisor.stopAccepting(deadline);
    log.info('stopped accepting; draining open connections');
    const cut = await supervisor.drained(deadline);
    await supervisor.release();
    api.close();
    log.info({ connections_cut: cut }, 'stopped');
  };
  let stopped: Promise<void> | undefined;
  return {
    config,
    publicPort: tlsPort,
    httpPort,
    metricsPort: metrics?.port,
    counters,
    certificates,
    supervisor,
    control,
    get apiSocketPath() {
      return api.socketPath;
    },
    eventSubscribers: () => eventStreams.subscriberCounts(),
    shutdown(drainMs = SHUTDOWN_DRAIN_MS) {
      return (stopped ??= stopGracefully(drainMs));
    },
  };
}

/** The one line an operator (and the tests) wait for: where everything listens. */
function logReady(config: EngineConfig, log: Logger, supervisor: WorkerSupervisor, ports: { tlsPort: number; httpPort: number | undefined; metricsPort: number | undefined }): void {
  const { tlsPort, httpPort, metricsPort } = ports;
  log.info(
    {
      tls: formatListenAddress({ host: config.tls.listen_addr.host, port: tlsPort }),
      http: httpPort === undefined ? undefined : formatListenAddress({ host: config.http.listen_addr!.host, port: httpPort }),
      public_port: tlsPort,
      metrics: metricsPort === undefined ? undefined : formatListenAddress({ host: config.metrics.prometheus.listen_addr!.host, port: metricsPort }),
      engine_host: config.engine.host,
      workers: supervisor.workerCount,
      listener_strategy: supervisor.strategy,
    },
    'ready',
  );
}

/**
 * The workers on the TLS listener (and affinity ports), then the HTTP redirect and the metrics
 * listeners. A bind failure releases everything started so far (workers, Engine API) and throws.
 */
async function startListeners(
  config: EngineConfig,
  log: Logger,
  parts: {
    supervisor: WorkerSupervisor;
    control: ControlPlane;
    api: InternalApiServer;
    eventStreams: Pick<EventStreams, 'close' | 'subscriberCounts'>;
    apiRequests: ApiRequestCounts;
    certificates: StaticCertificateProvider;
    counterBuffer: SharedArrayBuffer;
  },
) {
  const { supervisor, api, eventStreams } = parts;
  const listeners: Array<{ close(): void }> = [];
  const closeListeners = (): void => listeners.forEach((listener) => listener.close());
  const release = async (): Promise<void> => {
    closeListeners();
    eventStreams.close();
    await supervisor.release();
    api.close();
  };
  const tlsKey = (error: unknown): ListenKey =>
    error instanceof WorkerListenFailure && error.listener === 'affinity'
      ? ['dataplane.affinity.port_base', { host: config.tls.listen_addr.host, port: error.port }]
      : ['tls.listen_addr', config.tls.listen_addr];
  const tlsPort = await bindOrRelease(() => supervisor.start(), release, tlsKey);
  api.keepListening((socketPath) => {
    log.warn({ socket: socketPath }, 'the Engine API socket file was removed; listening on a new one');
    supervisor.broadcast({ type: 'api-socket', socketPath });
  });

  const redirectAddress = config.http.enabled ? config.http.listen_addr : undefined;
  const redirect = redirectAddress
    ? await bindOrRelease(() => startRedirectListener(redirectAddress, tlsPort), release, () => ['http.listen_addr', redirectAddress])
    : undefined;
  if (redirect) listeners.push(redirect);

  const counters = new CounterTable(parts.counterBuffer, config.dataplane.workers);
  const prometheus = config.metrics.prometheus;
  const metricsAddress = prometheus.enabled ? prometheus.listen_addr : undefined;
  const registry = (): Registry =>
    buildMetricsRegistry({ counters, control: parts.control, apiRequests: parts.apiRequests, certificates: parts.certificates, eventSubscribers: () => eventStreams.subscriberCounts() });
  const metrics = metricsAddress
    ? await bindOrRelease(
        () => MetricsServer.start({ address: metricsAddress, path: prometheus.path, bearerToken: prometheus.bearer_token, registry: registry() }),
        release,
        () => ['metrics.prometheus.listen_addr', metricsAddress],
      )
    : undefined;
  if (metrics) listeners.push(metrics);
  return { tlsPort, redirect, metrics, counters, closeListeners };
}

/** The config key a listener comes from, and the address it was given. */
type ListenKey = [key: string, address: ListenAddress];

/**
 * Binds a listener; if that fails, releases what has started and throws the ListenError that names the
 * config key: `listen error: <key> "<address>": <errno code>`.
 */
async function bindOrRelease<T>(bind: () => Promise<T>, release: () => Promise<void>, keyOf: (error: unknown) => ListenKey): Promise<T> {
  try {
    return await bind();
  } catch (error) {
    await release();
    const [key, address] = keyOf(error);
    const { code, message } = error as NodeJS.ErrnoException;
    const errno = error instanceof WorkerListenFailure ? error.errno : (code ?? message);
    throw new ListenError(`listen error: ${key} "${formatListenAddress(address)}": ${errno}`);
  }
}

/** The Engine API and its event streams, on their private Unix socket. */
async function startEngineApi(config: EngineConfig, log: Logger, control: ControlPlane, publicPort: () => number, certificate: () => CertificatePair) {
  let openApiDocument: string | undefined;
  const apiRequests = new ApiRequestCounts();
  const engineApi = new EngineApi({
    log,
    requestCounts: apiRequests,
    engineHost: config.engine.host,
    registry: control.registry,
    verifier: new TokenVerifier(config.auth.jwt.token_jwt_secret),
    openApiDocument: () => (openApiDocument ??= JSON.stringify(buildOpenApiDocument(`${config.engine.host}:${publicPort()}`))),
  });
  const eventStreams = new EventStreams(engineApi, new EventHub(control.registry));
  const trafficStats = new TrafficStats(engineApi, control.registry, control);
  const engineInfo = new EngineInfo(engineApi, { startedAt: new Date(), workers: config.dataplane.workers, listenerStrategy: listenerStrategy(), certificate });
  const requestLog = new RequestLogApi(engineApi, config.dashboard.request_log, control);
  const extensions = [trafficStats, engineInfo, requestLog, ...(config.dashboard.enabled ? [new Dashboard(engineApi)] : [])];
  const routes = [eventStreams, ...extensions, engineApi];
  const api = await InternalApiServer.start(routes);
  // Both kinds of stream hold spliced connections: shutdown ends them together.
  const streams = {
    close: () => {
      eventStreams.close();
      trafficStats.close();
    },
    subscriberCounts: () => eventStreams.subscriberCounts(),
  };
  return { apiRequests, eventStreams: streams, api };
}

/** The worker pool's supervisor, wired to the control plane and the certificate store (not yet started). */
function wiredSupervisor(
  config: EngineConfig,
  log: Logger,
  onFatal: (reason: string) => void,
  parts: {
    certificates: StaticCertificateProvider;
    counterBuffer: SharedArrayBuffer;
    tunnelTables: TunnelTables;
    control: ControlPlane;
    apiSocketPath: () => string;
  },
): WorkerSupervisor {
  const { certificates, control } = parts;
  return new WorkerSupervisor({
    config,
    log,
    certificate: () => certificates.current,
    counters: parts.counterBuffer,
    certCheckGate: createCertCheckGate(),
    tunnelTables: parts.tunnelTables,
    ticketKeys: crypto.randomBytes(48),
    apiSocketPath: parts.apiSocketPath,
    checkCertificate: () => certificates.check(),
    dataplane: dataplaneSettings(config),
    routes: () => control.routes(),
    onRequest: (worker, request) => control.handle(worker, request),
    onTunnelAnswered: (tunnelId) => control.tunnelAnswered(tunnelId),
    onWorkerLost: (worker) => control.workerLost(worker),
    onFatal,
  });
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
    requestLog: config.dashboard.request_log,
    affinity: affinity.enabled
      ? // Agents dial the engine's own host for the affinity ports unless told another.
        { portBase: affinity.port_base!, host: config.tls.listen_addr.host, advertiseHost: affinity.advertise_host ?? config.engine.host }
      : undefined,
  };
}
