import type { MessagePort } from 'node:worker_threads';
import type { LogLevel } from '../config/schema.js';

/**
 * Every message between the main thread (control plane) and the data-plane workers, declared once.
 * Both sides import these types; nothing else crosses the thread boundary.
 */

export interface CertificatePem {
  certPem: string;
  keyPem: string;
}

/** How a worker gets onto the TLS listener (see dataplane/listener.ts for why there are two ways). */
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
  /** The SharedArrayBuffer of metrics/counters.ts; this worker writes row `workerIndex` only. */
  counters: SharedArrayBuffer;
  /** The engine-wide certificate check gate (certs/check-gate.ts). */
  certCheckGate: SharedArrayBuffer;
  /** TLS session-ticket keys shared by all workers so resumption works whichever worker accepts. */
  ticketKeys: Uint8Array;
  certificate: CertificatePem;
  /** Unix socket of the main thread's HTTP server (Engine API). */
  apiSocketPath: string;
}

/** What a worker's task resolves with once it has drained. */
export interface WorkerExit {
  workerIndex: number;
  /** Connections still open at the drain deadline, closed by force. */
  connectionsCut: number;
}

export type MainToWorker =
  | { type: 'certificate'; certificate: CertificatePem }
  | { type: 'certificate-checked'; requestId: number }
  /** Stop taking new connections, let open ones finish until the deadline (epoch ms), then resolve. */
  | { type: 'shutdown'; deadline: number };

export type WorkerToMain =
  | { type: 'listening'; port: number; fd: number | undefined }
  | { type: 'check-certificate'; requestId: number }
  /** The worker dispatches no new connections any more (sent in reply to `shutdown`). */
  | { type: 'draining' };
