import crypto from 'node:crypto';
import net from 'node:net';
import type { TunnelProperties } from '../protocol/messages.js';
import { POOL_LABEL, POOL_MEMBERS_LABEL } from '../protocol/pool-labels.js';
import { VERSION } from '../version.js';
import { ControlClient } from './control-client.js';
import { diagnose } from './engine-errors.js';
import type { EngineEndpoint } from './engine-connection.js';
import { StreamForwarder, type ForwardTarget } from './stream-forwarder.js';
import { TargetFailureReport } from './target-failures.js';

export interface ForwardOptions {
  engine: EngineEndpoint;
  token: string;
  target: ForwardTarget;
  properties: TunnelProperties;
  retry: boolean;
  retryIntervalMs: number;
  output: 'text' | 'json';
  /** Aborted on Ctrl-C / SIGTERM: close the tunnel and the channel, then return 0. */
  signal: AbortSignal;
  print: (line: string) => void;
  /** Warnings that must not mix with `-o json` lines (stderr). */
  warn: (line: string) => void;
}

/** A status change as `-o json` prints it (docs/cli.md#rivulet-forward-hostport); unknown keys are left out. */
interface Status {
  status: string;
  tunnel_id?: string;
  forwarding?: string;
  forwarded?: string;
  /** The endpoint pool the tunnel joined, and its members with this one (docs/pools.md). */
  pool?: string;
  pool_members?: number;
}

/** The longest wait between attempts, however long the engine has been unreachable. */
const MAX_RETRY_INTERVAL_MS = 60_000;

/**
 * How one attempt ended: Ctrl-C; online, then the channel or tunnel was lost; a failure worth retrying
 * (the network, an engine restarting); or one the operator must fix (a bad token, an untrusted
 * certificate, a wrong address), which stops the agent.
 */
type Attempt = 'stopped' | 'lost' | 'failed' | 'permanent';

/**
 * `rivulet forward`: connect → create → serve, and on a failure worth retrying (connect, create,
 * channel loss, unsolicited close) wait and start again, recreating the same hostname. The wait starts
 * at the retry interval and doubles with each failure in a row (up to 60 s, ±20 % so that agents cut
 * off together do not come back together). Resolves with the exit status.
 */
export async function runForward(options: ForwardOptions): Promise<number> {
  const { signal } = options;
  const forwarded = `${options.target.host}:${options.target.port}`;
  const report = (status: Status): void => {
    if (options.output === 'json') options.print(JSON.stringify({ version: VERSION, ...status, forwarded }));
    else options.print(status.forwarding ? `${status.status}: ${status.forwarding} -> ${forwarded}${poolText(status)}` : status.status);
  };
  const targetFailures = new TargetFailureReport(forwarded, options.warn);
  let failuresInARow = 0;
  while (!signal.aborted) {
    report({ status: 'connecting' });
    const outcome = await serveOnce(options, report, targetFailures);
    if (outcome === 'stopped' || signal.aborted) return 0;
    if (outcome === 'permanent' || !options.retry) return 1;
    failuresInARow = outcome === 'lost' ? 1 : failuresInARow + 1;
    const wait = retryWait(options.retryIntervalMs, failuresInARow);
    if (options.output === 'text') options.print(`retrying in ${(wait / 1000).toFixed(1)} s`);
    await sleep(wait, signal);
  }
  return 0;
}

/** The pool the engine says the tunnel joined; a pool key it ignored (pooling off there) is worth a warning. */
function poolOf(tunnel: TunnelProperties, warn: (line: string) => void): Pick<Status, 'pool' | 'pool_members'> {
  const pool = tunnel.labels[POOL_LABEL];
  if (pool === undefined) return {};
  const members = Number(tunnel.labels[POOL_MEMBERS_LABEL]);
  if (!Number.isInteger(members)) {
    warn(`warning: the engine keeps no endpoint pools (tunnels.pooling.enabled is off there): pool "${pool}" means nothing`);
    return {};
  }
  return { pool, pool_members: members };
}

function poolText(status: Status): string {
  if (status.pool === undefined) return '';
  return ` (pool "${status.pool}", ${status.pool_members} ${status.pool_members === 1 ? 'member' : 'members'})`;
}

export function retryWait(intervalMs: number, failuresInARow: number): number {
  const doubled = intervalMs * 2 ** Math.min(failuresInARow - 1, 16);
  return Math.round(Math.min(doubled, Math.max(intervalMs, MAX_RETRY_INTERVAL_MS)) * (0.8 + 0.4 * Math.random()));
}

async function serveOnce(options: ForwardOptions, report: (status: Status) => void, targetFailures: TargetFailureReport): Promise<Attempt> {
  const tunnels = new Set<string>();
  let unsolicited: ((tunnelId: string) => void) | undefined;
  let forwarder: StreamForwarder | undefined;
  let opened: { client: ControlClient; clientId: string };
  try {
    opened = await ControlClient.open(options.engine, options.token, {
      onProxyConnReq: (request) => forwarder?.handle(request),
      onTunnelClosed: (tunnelId) => {
        if (tunnels.delete(tunnelId)) unsolicited?.(tunnelId);
      },
    });
  } catch (error) {
    const diagnosis = diagnose(error, options.engine);
    report({ status: `connection failed (${diagnosis.message})` });
    return diagnosis.permanent ? 'permanent' : 'failed';
  }
  const { client } = opened;
  report({ status: 'connected' });
  forwarder = targetForwarder(client, options, tunnels, targetFailures);
  let tunnel: TunnelProperties;
  try {
    tunnel = await client.openTunnel(options.properties);
  } catch (error) {
    const diagnosis = diagnose(error, options.engine);
    report({ status: `tunnel creation failed (${diagnosis.message})` });
    await client.close([]);
    return diagnosis.permanent ? 'permanent' : 'failed';
  }
  tunnels.add(tunnel.id!);
  report({ status: 'online', tunnel_id: tunnel.id!, forwarding: forwardingAddress(tunnel), ...poolOf(tunnel, options.warn) });

  let onAbort: (() => void) | undefined;
  const ending = await new Promise<'stopped' | 'lost' | 'closed'>((resolve) => {
    onAbort = () => resolve('stopped');
    if (options.signal.aborted) onAbort();
    options.signal.addEventListener('abort', onAbort, { once: true });
    void client.closed.then(() => resolve('lost'));
    unsolicited = () => resolve('closed');
  });
  options.signal.removeEventListener('abort', onAbort!);
  if (ending === 'stopped') {
    await client.close(tunnels);
    report({ status: 'disconnected' });
    return 'stopped';
  }
  await client.close([]);
  report({ status: 'disconnected' });
  return 'lost';
}

/** Carries the engine's proxy connections for our tunnels to the local target. */
function targetForwarder(client: ControlClient, options: ForwardOptions, tunnels: ReadonlySet<string>, targetFailures: TargetFailureReport): StreamForwarder {
  return new StreamForwarder({
    client,
    engine: options.engine,
    token: options.token,
    target: options.target,
    knowsTunnel: (tunnelId) => tunnels.has(tunnelId),
    onConnection: (sourceIp) => {
      if (options.output === 'text') options.print(`connection from ${sourceIp}`);
    },
    onTargetFailure: (reason) => targetFailures.failed(reason),
  });
}

/** How official clients show a tunnel. */
export function forwardingAddress(tunnel: TunnelProperties): string {
  const hostname = tunnel.hostname ?? tunnel.host;
  if (!hostname) return `rstrm://${tunnel.name || tunnel.id} (unpublished)`;
  if (tunnel.protocol === 'tls') return `${hostname}:${tunnel.port} (tls)`;
  return tunnel.port && tunnel.port !== 443 ? `https://${hostname}:${tunnel.port}` : `https://${hostname}`;
}

/**
 * The hostname a published tunnel asks for when `--host` is not given, generated once per process and
 * reused on every reconnect, so the URL survives an engine restart. For an engine host of two labels or
 * more it has the official CLI's form, `r<8 hex>-<first label>.t.<rest>` (the engine keeps its first
 * label); for `localhost` or an IP address, where that form has no room, the label alone.
 */
export function stableHostname(engineHost: string): string {
  const tag = `r${crypto.randomBytes(4).toString('hex')}`;
  if (net.isIP(engineHost)) return tag;
  const labels = engineHost.toLowerCase().split('.');
  if (labels.length < 2) return `${tag}-${labels[0]}`;
  return `${tag}-${labels[0]}.t.${labels.slice(1).join('.')}`;
}

/**
 * `--host` as the tunnel's hostname: a label (`web`), or the full `<label>.t.<engine host>`. Any other
 * name would be cut to its first label by the engine, so it is refused with what to pass instead.
 */
export function requestedHostname(host: string, engineHost: string): string | { problem: string } {
  const name = host.toLowerCase().replace(/\.$/, '');
  if (!name.includes('.')) return name;
  const suffix = `.t.${engineHost.toLowerCase()}`;
  if (!net.isIP(engineHost) && name.endsWith(suffix) && !name.slice(0, -suffix.length).includes('.')) return name;
  const label = name.split('.')[0];
  const full = net.isIP(engineHost) ? `${label}.t.<engine host>` : `${label}${suffix}`;
  return { problem: `--host "${host}": a published tunnel's hostname is <label>.t.<engine host>; pass the label (--host ${label}) or ${full}` };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
