import { Counter, Gauge, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import type { ApiRequestCounts } from '../api/request-counts.js';
import type { StaticCertificateProvider } from '../certs/static-provider.js';
import type { ControlPlane } from '../control/control-plane.js';
import { VERSION } from '../version.js';
import {
  ACCESS_DENIAL_REASONS,
  HANDSHAKE_FAILURE_REASONS,
  RESPONSE_CLASSES,
  RESPONSE_ORIGINS,
  STREAM_DIRECTIONS,
  STREAM_KINDS,
  STREAM_OUTCOMES,
  type CounterTable,
  type CounterValues,
} from '../threads/counters.js';

export interface MetricSources {
  counters: CounterTable;
  /** The registry and the outcome tallies (opens, closes, tunnel requests) of the main thread. */
  control: ControlPlane;
  apiRequests: ApiRequestCounts;
  certificates: StaticCertificateProvider;
  eventSubscribers: () => { sse: number; websocket: number };
}

type Sample = [labels: LabelValues<string>, value: number];
type Samples = () => Iterable<Sample>;

/** Declares metrics whose values are read when scraped. */
interface ScrapedMetrics {
  counter: (name: string, help: string, labelNames: string[], samples: Samples) => void;
  gauge: (name: string, help: string, labelNames: string[], samples: Samples) => void;
  /** The sum of the workers' counter rows, the same for every metric of one scrape. */
  totals: () => CounterValues;
}

/**
 * The engine's one prom-client registry, in the main thread. Nothing is counted per
 * event here: every value is read at scrape time, the data-path ones from the workers' SharedArrayBuffer
 * rows, the rest from the control plane's own state. No label takes per-tenant values. Full metric
 * table: docs/metrics.md.
 */
export function buildMetricsRegistry(sources: MetricSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'rivulet_' });
  // Gauges named like counters (promtool rejects them); the same figures remain, by type, without `_total`.
  for (const kind of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`rivulet_nodejs_active_${kind}_total`);

  const metrics = scrapedMetrics(registry, sources.counters);
  metrics.gauge('rivulet_build_info', 'Rivulet build; always 1', ['version'], () => [[{ version: VERSION }, 1]]);
  addControlPlaneMetrics(metrics, sources.control);
  addPoolMetrics(metrics, sources.control);
  addStreamMetrics(metrics);
  addEdgeMetrics(metrics);
  addWorkerMetrics(metrics, sources.counters);
  addCertificateMetrics(metrics, sources.certificates);
  addApiMetrics(metrics, sources);
  return registry;
}

function scrapedMetrics(registry: Registry, counters: CounterTable): ScrapedMetrics {
  const registers = [registry];
  // One consistent sum of the workers' rows per scrape (prom-client collects every metric in one turn).
  let scrapeTotals: CounterValues | undefined;
  const totals = (): CounterValues => {
    if (!scrapeTotals) {
      scrapeTotals = counters.totals();
      setImmediate(() => (scrapeTotals = undefined));
    }
    return scrapeTotals;
  };
  // Both are filled from `samples` at scrape time: reset, then every sample recorded.
  const counter = (name: string, help: string, labelNames: string[], samples: Samples): void => {
    new Counter({ name, help, labelNames, registers, collect: collectFrom(samples, (metric, labels, value) => metric.inc(labels, value)) });
  };
  const gauge = (name: string, help: string, labelNames: string[], samples: Samples): void => {
    new Gauge({ name, help, labelNames, registers, collect: collectFrom(samples, (metric, labels, value) => metric.set(labels, value)) });
  };
  return { counter, gauge, totals };
}

function collectFrom<M extends Counter | Gauge>(samples: Samples, record: (metric: M, labels: LabelValues<string>, value: number) => void): (this: M) => void {
  return function collect(this: M): void {
    this.reset();
    for (const [labels, value] of samples()) record(this, labels, value);
  };
}

function tallies(labelName: string, record: Readonly<Record<string, number>>): Sample[] {
  return Object.entries(record).map(([value, count]) => [{ [labelName]: value }, count]);
}

function addControlPlaneMetrics({ counter, gauge }: ScrapedMetrics, control: ControlPlane): void {
  gauge('rivulet_clients_connected', 'Live control channels', [], () => [[{}, control.registry.clients.size]]);
  counter('rivulet_control_channel_opens_total', 'Control-channel open requests by outcome', ['result'], () => tallies('result', control.opens));
  counter('rivulet_control_channel_closes_total', 'Control-channel teardowns by reason', ['reason'], () => tallies('reason', control.closes));
  gauge('rivulet_tunnels', 'Live tunnels by protocol and publish', ['protocol', 'publish'], () => liveTunnels(control));
  counter('rivulet_tunnel_requests_total', 'OpenTunnelReq outcomes', ['result'], () => tallies('result', control.tunnelRequests));
}

/** Endpoint pools: engine-wide counts only (a label per pool would grow with tenants). */
function addPoolMetrics({ counter, gauge, totals }: ScrapedMetrics, control: ControlPlane): void {
  gauge('rivulet_pools', 'Endpoint pools: hostnames or private names shared by tunnels of one pool key', [], () => [[{}, control.poolCounts().pools]]);
  gauge('rivulet_pool_members', 'Tunnels that are members of an endpoint pool', [], () => [[{}, control.poolCounts().members]]);
  counter('rivulet_pool_failovers_total', 'New streams sent to another pool member after the chosen one refused, timed out or was gone', [], () => [
    [{}, totals().pool_failovers],
  ]);
}

/** Every protocol and publish pair, 0 when no tunnel has it, so that a series does not vanish. */
function liveTunnels(control: ControlPlane): Sample[] {
  const live = new Map<string, number>();
  for (const protocol of ['http', 'tls', 'none']) for (const publish of ['true', 'false']) live.set(`${protocol} ${publish}`, 0);
  for (const tunnel of control.registry.tunnels.values()) {
    const key = `${tunnel.properties.protocol || 'none'} ${tunnel.properties.publish !== false}`;
    live.set(key, live.get(key)! + 1);
  }
  return [...live].map(([key, count]) => {
    const [protocol, publish] = key.split(' ');
    return [{ protocol, publish }, count] as Sample;
  });
}

function addStreamMetrics({ counter, gauge, totals }: ScrapedMetrics): void {
  gauge('rivulet_streams_active', 'Spliced or pooled proxy connections open, by kind', ['kind'], () =>
    STREAM_KINDS.map((kind) => [{ kind }, totals()[`streams_active_${kind}`]]),
  );
  counter('rivulet_streams_total', 'Stream attempts by kind and outcome', ['kind', 'outcome'], () =>
    STREAM_KINDS.flatMap((kind) => STREAM_OUTCOMES.map((outcome): Sample => [{ kind, outcome }, totals()[`streams_${kind}_${outcome}`]])),
  );
  counter(
    'rivulet_stream_bytes_total',
    'Payload bytes written to (upstream) and read from (downstream) agent proxy connections, by kind; sampled each second',
    ['kind', 'direction'],
    () => STREAM_KINDS.flatMap((kind) => STREAM_DIRECTIONS.map((direction): Sample => [{ kind, direction }, totals()[`stream_bytes_${kind}_${direction}`]])),
  );
}

/** What the public listener answered, refused or failed to handshake. */
function addEdgeMetrics({ counter, totals }: ScrapedMetrics): void {
  counter('rivulet_http_responses_total', 'Responses sent downstream on HTTP tunnels, by status class and origin', ['class', 'origin'], () =>
    RESPONSE_CLASSES.flatMap((klass) => RESPONSE_ORIGINS.map((origin): Sample => [{ class: klass, origin }, totals()[`http_responses_${klass}_${origin}`]])),
  );
  counter('rivulet_access_denied_total', 'Edge policy refusals by reason', ['reason'], () =>
    ACCESS_DENIAL_REASONS.map((reason) => [{ reason }, totals()[`access_denied_${reason}`]]),
  );
  counter('rivulet_tls_handshake_failures_total', 'Failed or aborted TLS handshakes on the public listener, by reason', ['reason'], () =>
    HANDSHAKE_FAILURE_REASONS.map((reason) => [{ reason }, totals()[`handshake_failures_${reason}`]]),
  );
  counter('rivulet_connections_refused_total', 'Connections closed at accept, before TLS, by reason', ['reason'], () => [
    [{ reason: 'max_connections' }, totals().connections_refused_max_connections],
  ]);
}

function addWorkerMetrics({ counter, gauge, totals }: ScrapedMetrics, counters: CounterTable): void {
  gauge('rivulet_worker_connections', 'Open TCP connections on the public listener, per data-plane worker', ['worker'], () =>
    Array.from({ length: counters.workers }, (_, worker): Sample => [{ worker: String(worker) }, counters.row(worker).connections_open]),
  );
  gauge('rivulet_worker_event_loop_delay_seconds', "A data-plane worker's event-loop delay over the last second", ['worker', 'stat'], () =>
    Array.from({ length: counters.workers }, (_, worker): Sample[] => {
      const row = counters.row(worker);
      return [
        [{ worker: String(worker), stat: 'p99' }, row.event_loop_delay_p99_ms / 1000],
        [{ worker: String(worker), stat: 'max' }, row.event_loop_delay_max_ms / 1000],
      ];
    }).flat(),
  );
  counter('rivulet_worker_relayed_streams_total', 'Proxy connections that landed on another worker than their stream and were relayed', [], () => [
    [{}, totals().streams_relayed],
  ]);
  counter('rivulet_worker_relay_bytes_total', 'Stream bytes relayed between workers (0 with perfect affinity)', [], () => [[{}, totals().relay_bytes]]);
}

function addCertificateMetrics({ counter, gauge }: ScrapedMetrics, certificates: StaticCertificateProvider): void {
  counter('rivulet_cert_reloads_total', 'Certificate reload attempts, by result', ['result'], () => tallies('result', certificates.reloads));
  gauge('rivulet_cert_expiry_timestamp_seconds', 'notAfter of the certificate in use, unix seconds', [], () => [
    [{}, Math.floor(certificates.current.notAfter.getTime() / 1000)],
  ]);
}

/** The Engine API's own use: event-stream subscribers and requests. */
function addApiMetrics({ counter, gauge }: ScrapedMetrics, sources: MetricSources): void {
  gauge('rivulet_event_subscribers', 'Live event streams, by transport', ['transport'], () => tallies('transport', sources.eventSubscribers()));
  counter('rivulet_api_requests_total', 'Engine API requests by endpoint and status class', ['endpoint', 'class'], () =>
    [...sources.apiRequests.entries()].map((entry): Sample => [{ endpoint: entry.endpoint, class: entry.class }, entry.count]),
  );
}
