import net from 'node:net';
import tls from 'node:tls';
import { FrameDecoder, encodeFrame } from '../../src/protocol/frame.js';
import type { MessageOf } from '../../src/protocol/messages.js';
import type { RawConnection } from './rstrm-agent.js';

export interface ProxyOptions {
  zeroRtt: boolean;
  /** `go`: ProxyConnRsp before the proxy connection; `js`: after it is up (both must work: docs/protocol.md#a-stream). */
  order: 'go' | 'js';
  /** Which port to dial for this request (default: the engine's main port). */
  portFor?: (request: MessageOf<'proxy_conn_req'>) => number;
  /** Bytes sent in the same write as ProxyReq (zero-RTT payload). */
  early?: Buffer;
}

/** Opens the agent side of one stream: a proxy connection with ProxyReq; resolves with its socket. */
export async function openProxyConnection(
  control: RawConnection,
  request: MessageOf<'proxy_conn_req'>,
  port: number,
  ca: Buffer,
  options: ProxyOptions,
): Promise<{ socket: tls.TLSSocket; early: Buffer }> {
  const accepted = { type: 'proxy_conn_rsp' as const, stream_id: request.stream_id };
  if (options.order === 'go') control.send(accepted);
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    // Half-open, like a real agent: the upstream may still answer after the downstream's end.
    const tcp = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    tcp.on('error', () => {});
    const s = tls.connect({ socket: tcp, servername: 'localhost', ALPNProtocols: ['rstrm/1'], ca });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
  socket.on('error', () => {});
  const proxyReq = encodeFrame({
    type: 'proxy_req',
    client_details: { agent: 'test', token: request.secret },
    stream_id: request.stream_id,
    zero_rtt: options.zeroRtt,
  });
  socket.write(options.early ? Buffer.concat([proxyReq, options.early]) : proxyReq);
  let early: Buffer = Buffer.alloc(0);
  if (!options.zeroRtt) {
    const decoder = new FrameDecoder();
    const reply = await new Promise<MessageOf<'proxy_rsp'>>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        decoder.push(chunk);
        const message = decoder.next();
        if (!message) return;
        socket.off('data', onData);
        socket.pause();
        if (message.type !== 'proxy_rsp') reject(new Error(`expected ProxyRsp, got ${message.type}`));
        else resolve(message);
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error('proxy connection closed before ProxyRsp')));
    });
    if (reply.error) throw Object.assign(new Error(`ProxyRsp error ${reply.error.code}`), { code: reply.error.code });
    early = decoder.takeRemainder();
  }
  if (options.order === 'js') control.send(accepted);
  return { socket, early };
}

/**
 * Answers every ProxyConnReq on `control` with a proxy connection whose upstream is an echo: bytes
 * come back as they are, and an end comes back as an end (half-close).
 */
export function serveEcho(
  control: RawConnection,
  port: number,
  ca: Buffer,
  options: ProxyOptions,
): { requests: Array<MessageOf<'proxy_conn_req'>>; options: ProxyOptions } {
  const requests: Array<MessageOf<'proxy_conn_req'>> = [];
  eachProxyConnReq(control, (request) => {
    requests.push(request);
    void openProxyConnection(control, request, options.portFor?.(request) ?? port, ca, options)
      .then(({ socket, early }) => {
        if (early.length > 0) socket.write(early);
        socket.pipe(socket);
      })
      .catch(() => undefined);
  });
  return { requests, options };
}

/** Calls `handle` for every ProxyConnReq the engine sends on `control`, until the channel ends. */
export function eachProxyConnReq(control: RawConnection, handle: (request: MessageOf<'proxy_conn_req'>) => void): void {
  void (async () => {
    for (;;) {
      try {
        handle(await control.next('proxy_conn_req', 600_000));
      } catch {
        return;
      }
    }
  })();
}

/**
 * Answers every ProxyConnReq on `control` like `rivulet forward` does: a proxy connection spliced to
 * a TCP connection to `target` (or a refusal when the target cannot be reached).
 */
export function serveForward(
  control: RawConnection,
  enginePort: number,
  ca: Buffer,
  target: () => number,
  portFor?: (request: MessageOf<'proxy_conn_req'>) => number,
): void {
  eachProxyConnReq(control, (request) => {
    const upstream = net.connect({ host: '127.0.0.1', port: target(), allowHalfOpen: true });
    upstream.on('error', () => {});
    upstream.once('connect', () => {
      void openProxyConnection(control, request, portFor?.(request) ?? enginePort, ca, { zeroRtt: true, order: 'js' })
        .then(({ socket }) => {
          socket.pipe(upstream);
          upstream.pipe(socket);
          socket.once('close', () => upstream.destroy());
          upstream.once('close', () => socket.destroy());
        })
        .catch(() => upstream.destroy());
    });
  });
}
