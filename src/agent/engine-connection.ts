import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { FrameDecoder, encodeFrame } from '../protocol/frame.js';
import type { Message } from '../protocol/messages.js';

/** What an agent needs to reach the engine. */
export interface EngineEndpoint {
  host: string;
  port: number;
  /** A private CA (PEM) trusted in addition to the system roots and NODE_EXTRA_CA_CERTS. */
  caPem: string | undefined;
}

const CONNECT_TIMEOUT_MS = 10_000;

/**
 * A TLS connection to the engine with ALPN `rstrm/1` (docs/protocol.md#transport-and-framing): SNI unless the host is an IP
 * literal, system roots plus the private CA, and a clear error if the engine picks another protocol.
 */
export function connectEngine(endpoint: EngineEndpoint): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    // Half-open: a stream's upstream may still answer after the engine side ended.
    const tcp = net.connect({ host: endpoint.host, port: endpoint.port, allowHalfOpen: true, noDelay: true });
    tcp.on('error', () => {});
    const socket = tls.connect({
      socket: tcp,
      host: endpoint.host, // what the certificate is checked against (an IP literal checks IP SANs)
      servername: net.isIP(endpoint.host) ? undefined : endpoint.host,
      ALPNProtocols: ['rstrm/1'],
      ...(endpoint.caPem ? { secureContext: contextTrusting(endpoint.caPem) } : {}),
    });
    const timer = setTimeout(() => fail(new Error(`connect to ${endpoint.host}:${endpoint.port} timed out`)), CONNECT_TIMEOUT_MS);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.off('error', fail);
      if (socket.alpnProtocol !== 'rstrm/1') {
        fail(new Error(`engine did not negotiate rstrm/1 (got ${socket.alpnProtocol || 'no ALPN'})`));
        return;
      }
      resolve(socket);
    });
  });
}

const contexts = new Map<string, tls.SecureContext>();

/**
 * One client context per private CA: building one parses every system root, far too slow to repeat
 * for each proxy connection.
 */
export function contextTrusting(caPem: string): tls.SecureContext {
  let context = contexts.get(caPem);
  if (!context) {
    context = tls.createSecureContext({ ca: [...tls.rootCertificates, ...extraCaCertificates(), caPem] });
    contexts.set(caPem, context);
  }
  return context;
}

/** Node adds NODE_EXTRA_CA_CERTS to its default store only; an explicit `ca` list must repeat them. */
function extraCaCertificates(): string[] {
  const file = process.env.NODE_EXTRA_CA_CERTS;
  if (!file) return [];
  try {
    return [fs.readFileSync(file, 'utf8')];
  } catch {
    return [];
  }
}

/** Frames in and out of one rstrm/1 socket, for the agent side. */
export class FrameChannel {
  private readonly decoder = new FrameDecoder();

  constructor(
    readonly socket: tls.TLSSocket,
    onMessage: (message: Message) => void,
    onError: (error: Error) => void,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      try {
        for (let message = this.decoder.next(); message; message = this.decoder.next()) onMessage(message);
      } catch (error) {
        onError(error as Error);
      }
    });
  }

  send(message: Message): void {
    if (!this.socket.destroyed) this.socket.write(encodeFrame(message));
  }
}
