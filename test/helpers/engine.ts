import tls from 'node:tls';
import fs from 'node:fs';
import { buildConfig } from '../../src/config/load.js';
import { startEngine, type RunningEngine } from '../../src/engine.js';
import { createLogger } from '../../src/log.js';
import type { DevCertificateFiles } from '../../src/certs/dev-ca.js';
import { configTree, devCertificates } from './fixtures.js';

export interface TestEngine {
  engine: RunningEngine;
  certs: DevCertificateFiles;
  ca: Buffer;
  stop(): Promise<void>;
}

/** A real engine (real worker threads and listeners) inside the test process, on ephemeral ports. */
export async function startTestEngine(
  overrides: Record<string, Record<string, unknown>> = {},
  certs?: DevCertificateFiles,
  onFatal: (reason: string) => void = (reason) => {
    throw new Error(`engine fatal: ${reason}`);
  },
): Promise<TestEngine> {
  const files = certs ?? (await devCertificates());
  const { config } = buildConfig(configTree(files, { dataplane: { workers: 2 }, ...overrides }), {});
  const engine = await startEngine(config, createLogger('error'), onFatal);
  return {
    engine,
    certs: files,
    ca: fs.readFileSync(files.caCert),
    stop: () => engine.shutdown(1000),
  };
}

export interface Handshake {
  socket: tls.TLSSocket;
  alpn: string | false | null;
  fingerprint256: string;
}

/**
 * Completes a TLS handshake with the engine or rejects with the client-side error. Resolves once the
 * server's session ticket arrived: a TLS 1.3 server sends it only after it has finished its side of
 * the handshake, so the engine has counted the connection by then.
 */
export function handshake(port: number, options: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options });
    let secure = false;
    socket.once('secureConnect', () => {
      secure = true;
      const result = { socket, alpn: socket.alpnProtocol, fingerprint256: socket.getPeerCertificate().fingerprint256 };
      const done = (): void => {
        socket.off('error', reject);
        socket.on('error', () => {});
        resolve(result);
      };
      if (socket.getProtocol() !== 'TLSv1.3') done();
      socket.once('session', done);
      socket.once('close', done); // the engine may close right after its side of the handshake
    });
    socket.once('error', reject);
    socket.once('close', () => {
      if (!secure) reject(new Error('closed before the handshake completed'));
    });
  });
}

/** The fingerprint of the certificate a fresh handshake with `servername` sees. */
export async function servedFingerprint(port: number, ca: Buffer, servername = 'localhost'): Promise<string> {
  const { socket, fingerprint256 } = await handshake(port, { servername, ca });
  socket.destroy();
  return fingerprint256;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` until it holds; throws after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}
