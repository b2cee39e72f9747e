import net from 'node:net';
import os from 'node:os';
import convict from 'convict';
import { isHostName, parseListenAddress, type ListenAddress } from './address.js';
import { machineConnectionLimit } from './machine-limits.js';

/**
 * The engine's configuration schema (docs/configuration.md#keys): every CE key plus Rivulet's `dataplane` section.
 * convict holds defaults, env-variable mapping and string coercion; `load.ts` reports problems in the
 * one-line format of docs/configuration.md, so each format's `validate` throws just the problem text.
 */

export const ENV_PREFIX = 'RSTREAM_ENGINE_';
const MIN_SECRET_BYTES = 32;

/** The env variable that overrides `path`: `a.b_c` → `RSTREAM_ENGINE_A__B_C`. */
export function envNameForKey(path: string): string {
  return ENV_PREFIX + path.split('.').join('__').toUpperCase();
}

const TRUE_WORDS = new Set(['true', '1', 'yes']);
const FALSE_WORDS = new Set(['false', '0', 'no']);

/** Schema items may carry bounds for `rivulet-int` and a `required` marker read by load.ts. */
type FormatName =
  | 'rivulet-bool'
  | 'rivulet-on-off'
  | 'rivulet-int'
  | 'rivulet-string'
  | 'rivulet-http-path'
  | 'rivulet-non-empty-string'
  | 'rivulet-secret'
  | 'rivulet-log-level'
  | 'rivulet-listen-addr'
  | 'rivulet-engine-host'
  | 'rivulet-host-or-ip';

interface RivuletFormat {
  validate(value: unknown, leaf: SchemaLeaf): void;
  coerce?(value: string): unknown;
  /** The value the engine uses, from a valid one (e.g. `host:port` → ListenAddress). */
  parse?(value: never): unknown;
}

/** The type each format yields in EngineConfig (after `parse`). */
interface FormatTypes {
  'rivulet-bool': boolean;
  'rivulet-on-off': boolean;
  'rivulet-int': number;
  'rivulet-string': string;
  'rivulet-http-path': string;
  'rivulet-non-empty-string': string;
  'rivulet-secret': string;
  'rivulet-log-level': LogLevel;
  'rivulet-listen-addr': ListenAddress;
  'rivulet-engine-host': string;
  'rivulet-host-or-ip': string;
}

export interface SchemaLeaf {
  format: FormatName;
  default: unknown;
  env: string;
  required?: boolean;
  sensitive?: boolean;
  min?: number;
  max?: number;
  doc: string;
}

function intProblem(leaf: SchemaLeaf): string {
  if (leaf.max !== undefined) return `expected integer between ${leaf.min ?? 0} and ${leaf.max}`;
  return `expected integer >= ${leaf.min ?? 0}`;
}

const FORMATS: Record<FormatName, RivuletFormat> = {
  'rivulet-bool': {
    validate(value: unknown) {
      if (typeof value !== 'boolean') throw new Error('expected boolean (true/false/yes/no/1/0)');
    },
    coerce(value: string) {
      const word = value.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
      return value;
    },
  },
  // YAML 1.1 readers (and people) write on/off unquoted as booleans: both spellings mean the same.
  'rivulet-on-off': {
    validate(value: unknown) {
      if (value !== 'on' && value !== 'off' && typeof value !== 'boolean') throw new Error('must be one of off, on');
    },
    coerce: (value: string) => value.trim().toLowerCase(),
    parse: (value: string | boolean) => value === true || value === 'on',
  },
  'rivulet-int': {
    validate(value: unknown, leaf: SchemaLeaf) {
      const ok =
        typeof value === 'number' &&
        Number.isSafeInteger(value) &&
        value >= (leaf.min ?? 0) &&
        (leaf.max === undefined || value <= leaf.max);
      if (!ok) throw new Error(intProblem(leaf));
    },
    coerce(value: string) {
      return /^\s*\d+\s*$/.test(value) ? Number(value) : value;
    },
  },
  'rivulet-string': {
    validate(value: unknown) {
      if (typeof value !== 'string') throw new Error('expected string');
    },
  },
  'rivulet-http-path': {
    validate(value: unknown) {
      if (typeof value !== 'string') throw new Error('expected string');
    },
    // An empty path is the default one; a missing leading slash is added.
    parse: (value: string) => (value === '' ? '/metrics' : value.startsWith('/') ? value : `/${value}`),
  },
  'rivulet-non-empty-string': {
    validate(value: unknown) {
      if (typeof value !== 'string' || value.length === 0) throw new Error('expected non-empty string');
    },
  },
  'rivulet-secret': {
    validate(value: unknown) {
      if (typeof value !== 'string') throw new Error('expected string');
      // A short HMAC key can be brute-forced from any one token an attacker holds.
      if (Buffer.byteLength(value) < MIN_SECRET_BYTES) throw new Error(`must be at least ${MIN_SECRET_BYTES} bytes (generate one: openssl rand -hex 32)`);
    },
  },
  'rivulet-log-level': {
    validate(value: unknown) {
      if (!LOG_LEVELS.includes(value as LogLevel)) throw new Error(`must be one of ${LOG_LEVELS.join(', ')}`);
    },
  },
  'rivulet-listen-addr': {
    validate(value: unknown) {
      if (typeof value !== 'string' || !parseListenAddress(value)) throw new Error('expected host:port');
    },
    parse: (value: string) => parseListenAddress(value)!,
  },
  'rivulet-host-or-ip': {
    validate(value: unknown) {
      const host = typeof value === 'string' ? value.replace(/^\[(.*)\]$/, '$1') : '';
      if (!isHostName(host) && net.isIP(host) === 0) throw new Error('must be a DNS name or an IP address');
    },
    parse: (value: string) => value.replace(/^\[(.*)\]$/, '$1'),
  },
  'rivulet-engine-host': {
    validate(value: unknown) {
      const host = typeof value === 'string' ? normalizeEngineHost(value) : '';
      if (!isHostName(host)) throw new Error('must be a bare DNS name without scheme or port');
      if (host.length > 187) throw new Error('must be at most 187 characters (so <label>.t.<host> fits in 253)');
    },
    parse: (value: string) => normalizeEngineHost(value),
  },
};
convict.addFormats(FORMATS as unknown as Record<string, convict.Format>);

/** The problem with `value` for this leaf, or undefined when it is valid. */
export function leafProblem(leaf: SchemaLeaf, value: unknown): string | undefined {
  try {
    FORMATS[leaf.format].validate(value, leaf);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `engine.host` is compared lowercased and without a trailing dot. */
export function normalizeEngineHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

/** The value `value` of a valid leaf takes in EngineConfig. */
export function parseLeaf(leaf: SchemaLeaf, value: unknown): unknown {
  const parse = FORMATS[leaf.format].parse as ((value: unknown) => unknown) | undefined;
  return parse ? parse(value) : value;
}

function leaf<const Spec extends Omit<SchemaLeaf, 'env'>>(path: string, spec: Spec): Spec & { env: string } {
  return { ...spec, env: envNameForKey(path) };
}

/** A leaf's type in EngineConfig: absent (undefined) unless it is required or has a default. */
type LeafValue<Leaf extends { format: FormatName; default: unknown }> = Leaf extends { required: true }
  ? FormatTypes[Leaf['format']]
  : undefined extends Leaf['default']
    ? FormatTypes[Leaf['format']] | undefined
    : FormatTypes[Leaf['format']];

type ConfigOf<Tree> = {
  readonly [Key in keyof Tree]: Tree[Key] extends { format: FormatName; default: unknown } ? LeafValue<Tree[Key]> : ConfigOf<Tree[Key]>;
};

/**
 * The validated, parsed engine configuration, its shape and types derived from the schema below, so a
 * key is declared once (docs/configuration.md#keys).
 */
export type EngineConfig = ConfigOf<typeof schemaDefinition>;

/** The schema tree as convict takes it; leaf order is the order errors are reported in. */
export const schemaDefinition = {
  engine: {
    host: leaf('engine.host', { format: 'rivulet-engine-host', default: undefined, required: true, doc: 'Base host' }),
    log_level: leaf('engine.log_level', {
      format: 'rivulet-log-level',
      default: 'info',
      doc: 'Log level',
    }),
  },
  http: {
    enabled: leaf('http.enabled', { format: 'rivulet-bool', default: false, doc: 'Plain-HTTP redirect listener' }),
    listen_addr: leaf('http.listen_addr', { format: 'rivulet-listen-addr', default: undefined, doc: 'host:port' }),
  },
  tls: {
    enabled: leaf('tls.enabled', { format: 'rivulet-bool', default: undefined, required: true, doc: 'Must be true' }),
    listen_addr: leaf('tls.listen_addr', {
      format: 'rivulet-listen-addr',
      default: undefined,
      required: true,
      doc: 'host:port',
    }),
  },
  certs: {
    static: {
      enabled: leaf('certs.static.enabled', {
        format: 'rivulet-bool',
        default: undefined,
        required: true,
        doc: 'Must be true',
      }),
      cert_file: leaf('certs.static.cert_file', {
        format: 'rivulet-non-empty-string',
        default: undefined,
        required: true,
        doc: 'PEM chain, leaf first',
      }),
      key_file: leaf('certs.static.key_file', {
        format: 'rivulet-non-empty-string',
        default: undefined,
        required: true,
        doc: 'PEM private key',
      }),
    },
  },
  auth: {
    jwt: {
      enabled: leaf('auth.jwt.enabled', {
        format: 'rivulet-bool',
        default: undefined,
        required: true,
        doc: 'Must be true',
      }),
      token_jwt_secret: leaf('auth.jwt.token_jwt_secret', {
        format: 'rivulet-secret',
        default: undefined,
        required: true,
        sensitive: true,
        doc: 'HS256 key',
      }),
    },
  },
  metrics: {
    prometheus: {
      enabled: leaf('metrics.prometheus.enabled', { format: 'rivulet-bool', default: false, doc: 'Metrics listener' }),
      listen_addr: leaf('metrics.prometheus.listen_addr', {
        format: 'rivulet-listen-addr',
        default: undefined,
        doc: 'host:port',
      }),
      path: leaf('metrics.prometheus.path', { format: 'rivulet-http-path', default: '/metrics', doc: 'Scrape path' }),
      bearer_token: leaf('metrics.prometheus.bearer_token', {
        format: 'rivulet-non-empty-string',
        default: undefined,
        sensitive: true,
        doc: 'Scrape token',
      }),
    },
  },
  dashboard: {
    enabled: leaf('dashboard.enabled', { format: 'rivulet-bool', default: true, doc: 'The web dashboard at /dashboard/ on the base host' }),
    request_log: leaf('dashboard.request_log', {
      format: 'rivulet-on-off',
      default: 'off',
      doc: "Keep each tunnel's last requests (paths without query strings) for the dashboard",
    }),
  },
  tunnels: {
    pooling: {
      enabled: leaf('tunnels.pooling.enabled', {
        format: 'rivulet-bool',
        default: false,
        doc: 'Tunnels with the same rivulet.pool label share a hostname or name (endpoint pools)',
      }),
    },
  },
  timeouts: {
    stream_request_seconds: leaf('timeouts.stream_request_seconds', {
      format: 'rivulet-int',
      default: 30,
      min: 1,
      doc: 'Wait for the agent proxy connection',
    }),
    http_idle_seconds: leaf('timeouts.http_idle_seconds', {
      format: 'rivulet-int',
      default: 90,
      min: 1,
      doc: 'Idle keep-alive timeout',
    }),
    http_request_head_seconds: leaf('timeouts.http_request_head_seconds', {
      format: 'rivulet-int',
      default: 60,
      min: 1,
      doc: 'An HTTP/1.1 request head must be complete this long after its first byte',
    }),
    http_request_body_idle_seconds: leaf('timeouts.http_request_body_idle_seconds', {
      format: 'rivulet-int',
      default: 60,
      min: 1,
      doc: 'A request body that sends nothing this long while the edge could take more ends its request (408)',
    }),
    http_response_seconds: leaf('timeouts.http_response_seconds', {
      format: 'rivulet-int',
      default: 120,
      min: 1,
      doc: 'Wait for an upstream response head after the request was sent (504 past it)',
    }),
  },
  dataplane: {
    workers: leaf('dataplane.workers', {
      format: 'rivulet-int',
      default: Math.min(256, os.availableParallelism()),
      min: 1,
      max: 256,
      doc: 'Data-plane worker threads',
    }),
    // A default limit, not unlimited: one tunnel's visitors must not make the engine ask its agent for an
    // unbounded number of proxy connections. 10,000 is far above what a pooled HTTP tunnel needs.
    max_streams_per_tunnel: leaf('dataplane.max_streams_per_tunnel', {
      format: 'rivulet-int',
      default: 10_000,
      doc: 'Pending + active streams per tunnel (0 = unlimited)',
    }),
    max_connections: leaf('dataplane.max_connections', {
      format: 'rivulet-int',
      default: machineConnectionLimit(),
      doc: 'Open connections on the TLS listener, all workers together; past it new ones are refused at accept (0 = unlimited; default sized for the machine)',
    }),
    max_tunnels_per_client: leaf('dataplane.max_tunnels_per_client', {
      format: 'rivulet-int',
      default: 0,
      doc: 'Live tunnels per control channel (0 = unlimited)',
    }),
    affinity: {
      enabled: leaf('dataplane.affinity.enabled', { format: 'rivulet-bool', default: false, doc: 'Per-worker ports' }),
      port_base: leaf('dataplane.affinity.port_base', {
        format: 'rivulet-int',
        default: undefined,
        min: 1,
        max: 65535,
        doc: 'Worker k listens on port_base + k',
      }),
      advertise_host: leaf('dataplane.affinity.advertise_host', {
        format: 'rivulet-host-or-ip',
        default: undefined,
        doc: 'Host agents dial for the affinity ports',
      }),
    },
  },
};

/** Every leaf key path with its schema item, in declaration order. */
export function schemaLeaves(): Array<[string, SchemaLeaf]> {
  const out: Array<[string, SchemaLeaf]> = [];
  const walk = (node: Record<string, unknown>, prefix: string): void => {
    for (const [name, child] of Object.entries(node)) {
      const path = prefix ? `${prefix}.${name}` : name;
      if (child && typeof child === 'object' && 'format' in child) out.push([path, child as SchemaLeaf]);
      else walk(child as Record<string, unknown>, path);
    }
  };
  walk(schemaDefinition, '');
  return out;
}
