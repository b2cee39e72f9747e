import type { TunnelTables } from './tunnel-stats.js';
import type { MessagePort } from 'node:worker_threads';
import type { LogLevel } from '../config/schema.js';
import { ErrorCode, type ClientDetails, type IpAddress, type RstrmError, type TunnelProperties } from '../protocol/messages.js';

/**
 * Every message between the main thread (control plane) and the data-plane workers, declared once.
 * Both sides import these types; nothing else crosses the thread boundary.
 */

export interface CertificatePem {
  certPem: string;
  keyPem: string;
}

/** How a worker gets onto the TLS listener (threads/listener-strategy.ts says why there are two ways). */
export type ListenPlan =
  /** Node >= 22.12: every worker binds its own socket to the same port with SO_REUSEPORT. */
  | { strategy: 'reuse-port'; host: string; port: number }
  /** Node 20, first worker: binds the socket and reports its descriptor. */
  | { strategy: 'shared-fd-owner'; host: string; port: number }
  /** Node 20, other workers: accept on the owner's descriptor. */
  | { strategy: 'shared-fd-attach'; fd: number };

/** The piscina task that runs one worker for its whole life. */
export interface WorkerTask {
  workerIndex: number;
  /** This worker's end of its MessageChannel to the main thread (transferred). */
  port: MessagePort;
  engineHost: string;
  logLevel: LogLevel;
  listen: ListenPlan;
  /** The SharedArrayBuffer of threads/counters.ts; this worker writes row `workerIndex` only. */
  counters: SharedArrayBuffer;
  /** The engine-wide certificate check gate (threads/cert-check-gate.ts). */
  certCheckGate: SharedArrayBuffer;
  /** Per-tunnel stream counts and traffic, by tunnel slot (threads/tunnel-stats.ts). */
  tunnelTables: TunnelTables;
  /** TLS session-ticket keys shared by all workers so resumption works whichever worker accepts. */
  ticketKeys: Uint8Array;
  certificate: CertificatePem;
  /** Unix socket of the main thread's HTTP server (Engine API). */
  apiSocketPath: string;
  /** What the data plane needs of the config. */
  dataplane: DataplaneSettings;
  /** Live tunnels at the time the worker starts (a replacement worker joins a running engine). */
  routes: TunnelRoute[];
}

export interface DataplaneSettings {
  workers: number;
  streamRequestMs: number;
  /** timeouts.http_idle_seconds: idle keep-alive connections (downstream and pooled upstream) close after it. */
  httpIdleMs: number;
  /** timeouts.http_request_head_seconds: an HTTP/1.1 request head must be complete this long after its first byte. */
  httpRequestHeadMs: number;
  /** timeouts.http_request_body_idle_seconds: a request body silent this long (the edge ready for more) ends its request. */
  httpRequestBodyIdleMs: number;
  /** timeouts.http_response_seconds: how long a sent request waits for its response head (then 504). */
  httpResponseMs: number;
  /** auth.jwt.token_jwt_secret: the HTTP edge checks token_auth tokens itself, off the main thread. */
  tokenSecret: string;
  /** dataplane.max_connections: open connections on the listener, all workers together; 0 = unlimited. */
  maxConnections: number;
  /** dataplane.max_streams_per_tunnel; 0 = unlimited. */
  maxStreamsPerTunnel: number;
  /** dashboard.request_log: the HTTP edge keeps each tunnel's recent requests (dataplane/http/request-log.ts). */
  requestLog: boolean;
  /** Affinity: this worker's own proxy port and what to advertise in ProxyConnReq.proxy_endpoint. */
  affinity: { portBase: number; host: string; advertiseHost: string } | undefined;
}

/** What every worker knows about a live tunnel; pushed by the control plane. */
export interface TunnelRoute {
  tunnel_id: string;
  client_id: string;
  /** The worker holding the owner's control channel, which sends its ProxyConnReqs. */
  owner_worker: number;
  /** Its row in the per-tunnel tables: stream counts (threads/stream-slots.ts) and traffic (threads/tunnel-stats.ts). */
  slot: number;
  properties: TunnelProperties;
}

/**
 * A control call's reply: its payload, or the rstrm/1 error to give the agent. A call never fails any
 * other way: a control plane that throws or does not answer in time yields `ok: false` (Internal), logged
 * with its cause where it happened.
 */
export type CallResult<Payload extends object = object> = ({ ok: true } & Payload) | { ok: false; error: RstrmError };

/** Requests a worker makes of the control plane, each with its reply type. */
export interface ControlCalls {
  'open-client': { request: { token: string | undefined; details: ClientDetails }; reply: CallResult<{ client_id: string }> };
  'open-tunnel': {
    request: { client_id: string; request_id: string; properties: TunnelProperties };
    reply: CallResult<{ tunnel_id: string; properties: TunnelProperties }>;
  };
  'close-tunnel': { request: { client_id: string; tunnel_id: string }; reply: CallResult };
  'close-client': { request: { client_id: string; reason: CloseReason }; reply: CallResult };
}

/** The reply to a control call the control plane could not answer (it threw, or was too slow). */
// Frozen: one object answers every such call, and a caller must not change what the next one gets.
export const CONTROL_PLANE_FAILED: { readonly ok: false; readonly error: Readonly<RstrmError> } = Object.freeze({
  ok: false,
  error: Object.freeze({ code: ErrorCode.Internal, message: 'internal error' }),
});
export type ControlCallName = keyof ControlCalls;
export type ControlRequest = { [K in ControlCallName]: { type: K } & ControlCalls[K]['request'] }[ControlCallName];
export type ControlReply<K extends ControlCallName> = ControlCalls[K]['reply'];

/** Why a control channel ended (the `reason` label of rivulet_control_channel_closes_total). */
export type CloseReason = 'agent' | 'eof' | 'liveness' | 'protocol_error' | 'shutdown';

/** Worker ↔ worker messages: stream set-up across workers and the relay of stream bytes. */
export type PeerMessage =
  /** To the control channel's worker: send ProxyConnReq to the agent. */
  | {
      type: 'proxy-conn-req';
      client_id: string;
      tunnel_id: string;
      stream_id: string;
      secret: string;
      source_ip: IpAddress | undefined;
      proxy_endpoint: string | undefined;
    }
  /** To the stream's worker: the agent refused it, or its control channel is gone. */
  | { type: 'stream-refused'; stream_id: string; reason: 'refused' | 'owner_gone'; error: RstrmError }
  /** To the stream's worker: a ProxyReq for this stream arrived here. */
  | { type: 'proxy-arrived'; stream_id: string; secret: string }
  /** The stream's worker's answer; with `adopt`, the tunnel whose pool takes the stream, and its slot. */
  | { type: 'proxy-verdict'; stream_id: string; verdict: ProxyVerdict; adopt?: { tunnel_id: string; slot: number } }
  /** Stream bytes, with credit-based flow control (dataplane/relay.ts). */
  | { type: 'relay-data'; stream_id: string; chunk: Uint8Array }
  | { type: 'relay-ack'; stream_id: string; bytes: number }
  | { type: 'relay-end'; stream_id: string }
  | { type: 'relay-close'; stream_id: string };

/**
 * `adopt`: the secret is right, but the stream is a pooled HTTP stream and the worker that received it
 * keeps it for its own pool of that tunnel (no relay); the asking worker asks again.
 */
export type ProxyVerdict = 'accepted' | 'adopt' | 'unknown' | 'bad-secret';

/** What a worker's task resolves with once it has drained. */
/** How a worker's task ended: drained after shutdown, or it could not bind one of its listeners. */
export type WorkerExit =
  | {
      outcome: 'drained';
      workerIndex: number;
      /** Connections still open at the drain deadline, closed by force. */
      connectionsCut: number;
    }
  | { outcome: 'listen-failed'; workerIndex: number; listener: 'tls' | 'affinity'; port: number; code: string };

/** One request in a tunnel's request log: what an operator may see of it (no query string, no headers). */
export interface LoggedRequest {
  /** Epoch ms its head arrived. */
  time: number;
  method: string;
  /** The request path without its query string, cut at 256 characters. */
  path: string;
  /** The status sent downstream; null when none was (the client left first). */
  status: number | null;
  /** Who answered: the tunnel's upstream, or the edge itself (401, 403, 503, 504 …). */
  origin: 'upstream' | 'edge';
  /** From its head arriving to its last response byte sent (or to its cut). */
  duration_ms: number;
  /** Response body bytes sent downstream. */
  bytes: number;
  client_ip: string | null;
  /** The response did not complete: the client left, or it was cut. */
  aborted: boolean;
}

export type MainToWorker =
  | { type: 'certificate'; certificate: CertificatePem }
  /** The request log of the tunnel in this slot (answered by `request-log`). */
  | { type: 'request-log'; queryId: number; slot: number }
  | { type: 'reply'; id: number; reply: ControlReply<ControlCallName> }
  | { type: 'route-add'; route: TunnelRoute }
  | { type: 'route-remove'; tunnel_id: string }
  /** Worker `index`'s end of a worker↔worker channel (transferred). */
  | { type: 'peer'; index: number; port: MessagePort }
  | { type: 'certificate-checked'; requestId: number }
  /** The Engine API listens on a new Unix socket (its file was removed). */
  | { type: 'api-socket'; socketPath: string }
  /**
   * Stop dispatching new connections and say goodbye to agents; let open connections finish until
   * the deadline (epoch ms), then resolve the task.
   */
  | { type: 'shutdown'; deadline: number }
  /** Close the listening handle (sent once every worker has stopped dispatching). */
  | { type: 'close-listener' };

export type WorkerToMain =
  | { type: 'listening'; port: number; fd: number | undefined }
  | { type: 'request'; id: number; request: ControlRequest }
  /** The OpenTunnelRsp is written: the tunnel is announced (the workers route it since it was accepted). */
  | { type: 'tunnel-answered'; tunnel_id: string }
  | { type: 'check-certificate'; requestId: number }
  /** The worker dispatches no new connections any more (sent in reply to `shutdown`). */
  | { type: 'draining' }
  /** This worker's part of a tunnel's request log, oldest first. */
  | { type: 'request-log'; queryId: number; requests: LoggedRequest[] };
