import type net from 'node:net';
import { parseClientHello, type ClientHello } from './client-hello.js';

/**
 * Real clients send a ClientHello in one to a few segments. Each read re-parses what has arrived, so
 * a client trickling bytes one at a time could make that quadratic: past this many reads it is dropped.
 */
const MAX_READS = 64;

export type PeekResult =
  | { status: 'complete'; hello: ClientHello }
  | { status: 'invalid'; reason: string }
  | { status: 'timeout' }
  | { status: 'closed' };

/**
 * Reads a raw socket until its ClientHello is complete, then puts every byte back (unshift) so the
 * TLS server that takes the socket over sees the handshake from its first byte.
 */
export function peekClientHello(socket: net.Socket, timeoutMs: number): Promise<PeekResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const finish = (result: PeekResult): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onClosed);
      socket.off('close', onClosed);
      socket.off('error', onClosed);
      resolve(result);
    };
    let reads = 0;
    const onData = (chunk: Buffer): void => {
      if (++reads > MAX_READS) {
        finish({ status: 'invalid', reason: `ClientHello not complete after ${MAX_READS} reads` });
        return;
      }
      chunks.push(chunk);
      length += chunk.length;
      const data = chunks.length === 1 ? chunk : Buffer.concat(chunks, length);
      const parsed = parseClientHello(data);
      if (parsed.status === 'incomplete') return;
      socket.pause();
      if (parsed.status === 'complete') socket.unshift(data);
      finish(parsed);
    };
    const onClosed = (): void => finish({ status: 'closed' });
    const timer = setTimeout(() => finish({ status: 'timeout' }), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onClosed);
    socket.once('close', onClosed);
    socket.once('error', onClosed);
  });
}
