import crypto from 'node:crypto';
import { ErrorCode, type RstrmError, type TunnelProperties } from '../protocol/messages.js';
import { parseCidr } from '../net/ip.js';
import { opensslCipherName } from '../net/tls-ciphers.js';
import { MAX_POOL_WEIGHT, POOL_KEY, POOL_LABEL, POOL_WEIGHT_LABEL } from '../protocol/pool-labels.js';

/**
 * OpenTunnelReq validation and normalisation (docs/protocol.md#the-control-channel), as one pure
 * function of the request and the engine's state. Checks run in the documented order: scope (5000),
 * consistency (2000), then name and hostname allocation (2000). Permission and the per-client limit
 * are the registry's (they come first).
 */

export interface TunnelRequestContext {
  engineHost: string;
  publicPort: number;
  /** tunnels.pooling.enabled: a name or hostname in use may be joined by a tunnel of the same pool. */
  pooling: boolean;
  /** The properties of a tunnel (live or reserved) holding this name (lowercase), if any. */
  nameHolder(nameLowercase: string): TunnelProperties | undefined;
  /** The same for a hostname. */
  hostnameHolder(hostname: string): TunnelProperties | undefined;
}

/** The tunnel as the engine keeps and echoes it (OpenTunnelRsp and, later, the API). */
export interface AcceptedTunnel {
  properties: TunnelProperties;
  publish: boolean;
  /** `http`, `tls`, or undefined for a private tunnel without one. */
  protocol: 'http' | 'tls' | undefined;
  hostname: string | undefined;
}

export type TunnelRequestResult = { ok: AcceptedTunnel } | { error: RstrmError };

const UNAVAILABLE_PROTOCOLS = new Set(['tcp', 'dtls', 'quic', 'webtty']);
const TLS_MODES = new Set(['terminated', 'passthrough']);
const HTTP_VERSIONS = new Set(['http/1.1', 'h2c']);
const TLS_VERSIONS = new Set(['tls1.2', 'tls1.3']);
const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$/;
const HOST_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const RANDOM_LABEL_LENGTH = 10;
const RANDOM_LABEL_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

const set = {
  bool: (value: boolean | undefined): boolean => value === true,
  text: (value: string | undefined): value is string => value !== undefined && value !== '',
  list: (value: readonly unknown[]): boolean => value.length > 0,
};

class Refusal extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}
const unavailable = (what: string): never => {
  throw new Refusal(ErrorCode.FeatureNotAvailable, `feature not available: ${what}`);
};
const invalid = (message: string): never => {
  throw new Refusal(ErrorCode.InvalidRequest, message);
};

export function acceptTunnelRequest(request: TunnelProperties, context: TunnelRequestContext): TunnelRequestResult {
  try {
    return { ok: accept(request, context) };
  } catch (error) {
    if (error instanceof Refusal) return { error: { code: error.code, message: error.message } };
    throw error;
  }
}

function accept(p: TunnelProperties, context: TunnelRequestContext): AcceptedTunnel {
  const publish = p.publish !== false;
  const upstreamTls = p.upstream_tls ?? p.http_use_tls;
  checkScope(p, publish, upstreamTls);
  checkFieldValues(p);
  // Consistency, second part: the fields that the tunnel's kind allows.
  const protocol = p.protocol === 'http' || p.protocol === 'tls' ? p.protocol : publish ? 'http' : undefined;
  if (!publish) checkPrivateTunnel(p);
  else if (protocol === 'http') checkHttpTunnel(p, upstreamTls);
  else checkTlsTunnel(p, upstreamTls);
  if (context.pooling) checkPoolLabels(p.labels);
  const properties = acceptedProperties(p, { publish, protocol }, upstreamTls);

  // Allocation: name, then hostname; one in use is refused, or joined by a member of its pool.
  if (set.text(p.name)) {
    const holder = context.nameHolder(p.name.toLowerCase());
    if (holder) checkJoin(`name "${p.name}"`, holder, properties, context.pooling);
  }
  const hostname = publish ? allocateHostname(p, context, properties) : undefined;
  if (hostname) {
    properties.hostname = hostname;
    properties.host = hostname;
    properties.port = context.publicPort;
  }
  return { properties, publish, protocol, hostname };
}

/** Scope: FEATURE_NOT_AVAILABLE, in this order. */
function checkScope(p: TunnelProperties, publish: boolean, upstreamTls: boolean | undefined): void {
  if (p.type === 'datagram') unavailable('type=datagram');
  if (set.text(p.protocol) && UNAVAILABLE_PROTOCOLS.has(p.protocol)) unavailable(`protocol=${p.protocol}`);
  if (p.port) unavailable(`port=${p.port}`);
  if (p.http_version === 'h3') unavailable('http_version=h3');
  if (set.bool(p.rstream_auth)) unavailable('rstream_auth');
  if (set.bool(p.challenge_mode)) unavailable('challenge_mode');
  if (set.list(p.geoip)) unavailable('geo_ip');
  if (set.bool(p.mtls_auth) || set.text(p.mtls_cacert_pem)) unavailable('mtls_auth');
  if (set.bool(p.datagram_guaranteed_delivery)) unavailable('datagram_guaranteed_delivery');
  if (!publish && upstreamTls === true) unavailable('upstream_tls');
}

/** Consistency (INVALID_REQUEST), first part: each field's own value, whatever the tunnel's kind. */
function checkFieldValues(p: TunnelProperties): void {
  if (set.text(p.type) && p.type !== 'bytestream') invalid(`invalid type "${p.type}"`);
  if (set.text(p.protocol) && p.protocol !== 'http' && p.protocol !== 'tls') invalid(`invalid protocol "${p.protocol}"`);
  if (set.text(p.tls_mode) && !TLS_MODES.has(p.tls_mode)) invalid(`invalid tls_mode "${p.tls_mode}"`);
  if (set.text(p.http_version) && !HTTP_VERSIONS.has(p.http_version) && p.http_version !== 'h2') {
    invalid(`invalid http_version "${p.http_version}"`);
  }
  if (set.text(p.tls_min_version) && !TLS_VERSIONS.has(p.tls_min_version)) {
    invalid(`invalid tls_min_version "${p.tls_min_version}"`);
  }
  if (p.upstream_tls !== undefined && p.http_use_tls !== undefined && p.upstream_tls !== p.http_use_tls) {
    invalid('upstream_tls and http_use_tls disagree');
  }
  if (set.text(p.hostname) && set.text(p.host) && p.hostname !== p.host) invalid('hostname and host disagree');
  if (p.name !== undefined && p.name !== '' && !NAME.test(p.name)) invalid(`invalid name "${p.name}"`);
  checkLabels(p.labels);
}

function checkPrivateTunnel(p: TunnelProperties): void {
  const forbidden: Array<[string, boolean]> = [
    ['hostname', set.text(p.hostname) || set.text(p.host)],
    ['trusted_ips', set.list(p.trusted_ips)],
    ['token_auth', set.bool(p.token_auth)],
    ['http_version', set.text(p.http_version)],
    ['tls_mode', set.text(p.tls_mode)],
    ['tls_alpns', set.list(p.tls_alpns)],
    ['tls_min_version', set.text(p.tls_min_version)],
    ['tls_ciphers', set.list(p.tls_ciphers)],
  ];
  for (const [field, present] of forbidden) if (present) invalid(`${field} is not allowed on a private tunnel`);
}

function checkHttpTunnel(p: TunnelProperties, upstreamTls: boolean | undefined): void {
  for (const [field, present] of [
    ['tls_mode', set.text(p.tls_mode)],
    ['tls_alpns', set.list(p.tls_alpns)],
    ['tls_min_version', set.text(p.tls_min_version)],
    ['tls_ciphers', set.list(p.tls_ciphers)],
  ] as const) {
    if (present) invalid(`${field} requires protocol tls`);
  }
  if (p.http_version === 'h2') invalid('http_version "h2" is not supported: use h2c, or upstream_tls for h2 over TLS');
  if (set.text(p.http_version) && upstreamTls === true) invalid('http_version cannot be set with upstream_tls (ALPN decides)');
  checkTrustedIps(p.trusted_ips);
}

function checkTlsTunnel(p: TunnelProperties, upstreamTls: boolean | undefined): void {
  if (set.text(p.http_version)) invalid('http_version requires protocol http');
  if (set.bool(p.token_auth)) invalid('token_auth requires protocol http');
  if (p.tls_mode === 'passthrough') {
    for (const [field, present] of [
      ['upstream_tls', upstreamTls === true],
      ['tls_min_version', set.text(p.tls_min_version)],
      ['tls_ciphers', set.list(p.tls_ciphers)],
      ['tls_alpns', set.list(p.tls_alpns)],
    ] as const) {
      if (present) invalid(`${field} is not allowed with tls_mode passthrough`);
    }
  }
  for (const cipher of p.tls_ciphers) if (!opensslCipherName(cipher)) invalid(`unknown tls cipher "${cipher}"`);
  if (p.tls_alpns.length > 16) invalid('tls_alpns: at most 16 entries');
  for (const alpn of p.tls_alpns) {
    if (!/^[\x21-\x7e]{1,255}$/.test(alpn)) invalid(`invalid tls_alpns entry "${alpn}"`);
  }
  checkTrustedIps(p.trusted_ips);
}

/** The request, validated, with the engine's defaults filled in (the hostname is allocated after). */
function acceptedProperties(
  p: TunnelProperties,
  { publish, protocol }: Pick<AcceptedTunnel, 'publish' | 'protocol'>,
  upstreamTls: boolean | undefined,
): TunnelProperties {
  const properties: TunnelProperties = {
    labels: { ...p.labels },
    geoip: [],
    trusted_ips: [...p.trusted_ips],
    tls_alpns: [...p.tls_alpns],
    tls_ciphers: [...p.tls_ciphers],
    type: 'bytestream',
    publish,
  };
  if (set.text(p.name)) properties.name = p.name;
  if (protocol && (publish || set.text(p.protocol))) properties.protocol = protocol;
  if (p.token_auth !== undefined) properties.token_auth = p.token_auth;
  if (p.http_use_tls !== undefined) properties.http_use_tls = p.http_use_tls;
  if (publish && protocol === 'http' && upstreamTls !== true) properties.http_version = p.http_version || 'http/1.1';
  if (publish && protocol === 'tls') {
    properties.tls_mode = p.tls_mode || 'terminated';
    if (set.text(p.tls_min_version)) properties.tls_min_version = p.tls_min_version;
  }
  if (publish && (protocol === 'tls' ? properties.tls_mode === 'terminated' : true)) {
    properties.upstream_tls = upstreamTls === true;
  }
  return properties;
}

function allocateHostname(p: TunnelProperties, context: TunnelRequestContext, properties: TunnelProperties): string {
  const suffix = `.t.${context.engineHost}`;
  const requested = set.text(p.hostname) ? p.hostname : set.text(p.host) ? p.host.replace(/:\d+$/, '') : undefined;
  let hostname: string;
  if (requested === undefined) {
    do hostname = randomLabel() + suffix;
    while (context.hostnameHolder(hostname));
    return hostname;
  }
  const name = requested.toLowerCase().replace(/\.$/, '');
  if (/[:/\\?#@\s]/.test(name) || name.split('.').some((label) => label === '')) {
    invalid(`invalid hostname "${requested}"`);
  }
  const label = name.endsWith(suffix) && !name.slice(0, -suffix.length).includes('.') ? name.slice(0, -suffix.length) : name.split('.')[0]!;
  if (!HOST_LABEL.test(label)) invalid(`invalid hostname label "${label}"`);
  hostname = label + suffix;
  const holder = context.hostnameHolder(hostname);
  if (holder) checkJoin(`hostname "${hostname}"`, holder, properties, context.pooling);
  return hostname;
}

/**
 * The properties every member of a pool must share: the ones the edge decides on before it picks a
 * member (what it serves, who may reach it, the TLS it offers).
 */
const POOL_SHARED: Array<keyof TunnelProperties> = ['protocol', 'publish', 'http_version', 'tls_mode', 'token_auth', 'trusted_ips', 'tls_min_version', 'tls_ciphers', 'tls_alpns'];

/**
 * `what` is in use by `holder`: refused, unless pooling is on and this tunnel joins the holder's pool
 * (same pool key, same shared properties). The message names what stands in the way.
 */
function checkJoin(what: string, holder: TunnelProperties, mine: TunnelProperties, pooling: boolean): void {
  const taken = `${what} is already used by another live tunnel`;
  if (!pooling) invalid(taken);
  const theirs = holder.labels[POOL_LABEL];
  const ours = mine.labels[POOL_LABEL];
  if (theirs === undefined) invalid(`${taken}, which is not in a pool`);
  if (ours === undefined) invalid(`${what} belongs to pool "${theirs}": join it with the label ${POOL_LABEL}=${theirs}`);
  if (ours !== theirs) invalid(`${what} belongs to pool "${theirs}", not "${ours}"`);
  for (const field of POOL_SHARED) {
    const [a, b] = [shared(holder[field]), shared(mine[field])];
    if (a !== b) invalid(`${what}: members of pool "${theirs}" must agree on ${field} (the pool has ${a || 'none'}, this tunnel ${b || 'none'})`);
  }
}

/** A shared property as compared between members: lists as sets. */
function shared(value: TunnelProperties[keyof TunnelProperties]): string {
  if (Array.isArray(value)) return [...value].map(String).sort().join(',');
  return value === undefined || value === null ? '' : String(value);
}

/** With pooling on, the pool labels must be well-formed. */
function checkPoolLabels(labels: Record<string, string>): void {
  const key = labels[POOL_LABEL];
  if (key !== undefined && !POOL_KEY.test(key)) invalid(`label ${POOL_LABEL}: 1-64 characters of A-Z, a-z, 0-9, ".", "_", "-"`);
  const weight = labels[POOL_WEIGHT_LABEL];
  if (weight === undefined) return;
  if (key === undefined) invalid(`label ${POOL_WEIGHT_LABEL} needs ${POOL_LABEL}`);
  if (!/^\d{1,3}$/.test(weight) || Number(weight) < 1 || Number(weight) > MAX_POOL_WEIGHT) invalid(`label ${POOL_WEIGHT_LABEL}: an integer from 1 to ${MAX_POOL_WEIGHT}`);
}

function randomLabel(): string {
  const bytes = crypto.randomBytes(RANDOM_LABEL_LENGTH);
  let label = '';
  for (const byte of bytes) label += RANDOM_LABEL_ALPHABET[byte % RANDOM_LABEL_ALPHABET.length];
  return label;
}

function checkLabels(labels: Record<string, string>): void {
  const entries = Object.entries(labels);
  if (entries.length > 64) invalid('labels: at most 64 entries');
  for (const [key, value] of entries) {
    if (key.length < 1 || key.length > 128) invalid(`invalid label key "${key.slice(0, 32)}" (1-128 characters)`);
    if (value.length > 1024) invalid(`label "${key}": value longer than 1024 characters`);
  }
}

function checkTrustedIps(entries: readonly string[]): void {
  if (entries.length > 256) invalid('trusted_ips: at most 256 entries');
  for (const entry of entries) if (!parseCidr(entry)) invalid(`invalid trusted_ips entry "${entry}"`);
}

