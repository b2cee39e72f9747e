import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { StaticCertificateProvider } from '../certs/static-provider.js';
import type { Registry as ControlRegistry } from '../control/registry.js';
import { VERSION } from '../version.js';
import { HANDSHAKE_FAILURE_REASONS, type CounterTable } from './counters.js';

export interface MetricSources {
  counters: CounterTable;
  registry: ControlRegistry;
  /** Control-channel teardowns by reason (ControlPlane.closes). */
  closes: Readonly<Record<string, number>>;
  certificates: StaticCertificateProvider;
  eventSubscribers: () => { sse: number; websocket: number };
}

/**
 * The engine's one prom-client registry (engine.md §16.2), in the main thread. Nothing is counted per
 * event: every value is read at scrape time, the data-path ones from the workers' SharedArrayBuffer rows,
 * the rest from the control plane's own state. No label takes per-tenant values.
 */
export function buildMetricsRegistry(sources: MetricSources): Registry {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry, prefix: 'rivulet_' });

  new Gauge({ name: 'rivulet_build_info', help: 'Rivulet build; always 1', labelNames: ['version'], registers }).set({ version: VERSION }, 1);
  new Gauge({
    name: 'rivulet_clients_connected',
    help: 'Live control channels',
    registers,
    collect() {
      this.set(sources.registry.clients.size);
    },
  });
  new Gauge({
    name: 'rivulet_tunnels',
    help: 'Live tunnels by protocol and publish',
    labelNames: ['protocol', 'publish'],
    registers,
    collect() {
      this.reset();
      for (const protocol of ['http', 'tls', 'none']) for (const publish of ['true', 'false']) this.set({ protocol, publish }, 0);
      for (const tunnel of sources.registry.tunnels.values()) {
        this.inc({ protocol: tunnel.properties.protocol || 'none', publish: String(tunnel.properties.publish !== false) });
      }
    },
  });
  new Counter({
    name: 'rivulet_control_channel_closes_total',
    help: 'Control-channel teardowns by reason',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, count] of Object.entries(sources.closes)) this.inc({ reason }, count);
    },
  });
  new Counter({
    name: 'rivulet_tls_handshake_failures_total',
    help: 'Failed or aborted TLS handshakes on the public listener, by reason',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      const totals = sources.counters.totals();
      for (const reason of HANDSHAKE_FAILURE_REASONS) this.inc({ reason }, totals[`handshake_failures_${reason}`]);
    },
  });
  new Gauge({
    name: 'rivulet_worker_connections',
    help: 'Open TCP connections on the public listener, per data-plane worker',
    labelNames: ['worker'],
    registers,
    collect() {
      for (let worker = 0; worker < sources.counters.workers; worker++) this.set({ worker: String(worker) }, sources.counters.row(worker).connections_open);
    },
  });
  new Counter({
    name: 'rivulet_worker_relay_bytes_total',
    help: 'Stream bytes relayed between workers (0 with perfect affinity)',
    registers,
    collect() {
      this.reset();
      this.inc(sources.counters.totals().relay_bytes);
    },
  });
  new Counter({
    name: 'rivulet_cert_reloads_total',
    help: 'Certificate reload attempts, by result',
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      this.inc({ result: 'ok' }, sources.certificates.reloads.ok);
      this.inc({ result: 'failed' }, sources.certificates.reloads.failed);
    },
  });
  new Gauge({
    name: 'rivulet_cert_expiry_timestamp_seconds',
    help: 'notAfter of the certificate in use, unix seconds',
    registers,
    collect() {
      this.set(Math.floor(sources.certificates.current.notAfter.getTime() / 1000));
    },
  });
  new Gauge({
    name: 'rivulet_event_subscribers',
    help: 'Live event streams, by transport',
    labelNames: ['transport'],
    registers,
    collect() {
      const { sse, websocket } = sources.eventSubscribers();
      this.set({ transport: 'sse' }, sse);
      this.set({ transport: 'websocket' }, websocket);
    },
  });
  return registry;
}
