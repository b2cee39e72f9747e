import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { CounterRow } from '../../metrics/counters.js';
import { splice } from '../splice.js';
import type { ForwardPlan } from './exchange.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './forwarded-headers.js';
import { sendGenerated } from './generated-response.js';
import { countResponse } from './response-metrics.js';
import type { TunnelUpstreams } from './upstream-pool.js';

/** Response headers of a 101 that belong to one hop only; Connection and Upgrade are the handshake itself. */
const NOT_RELAYED_ON_101 = new Set(['keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'http2-settings']);

/**
 * A WebSocket upgrade (engine.md §12.5): its own fresh stream to the agent, the upgrade request sent
 * as HTTP/1.1 with the Sec-WebSocket-* headers unchanged; a 101 is relayed and the two connections
 * spliced raw with half-close and no idle timeout; any other status is relayed as a normal response
 * and the connection closed.
 */
export async function relayWebSocket(
  pool: TunnelUpstreams,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  downstream: Duplex,
  downstreamHead: Buffer,
  plan: ForwardPlan,
  counters: CounterRow,
): Promise<void> {
  const downstreamGone = new AbortController();
  downstream.once('close', () => downstreamGone.abort());
  const dedicated = await pool.dedicated(plan.peerAddress, downstreamGone.signal);
  if (!dedicated.ok) {
    if (!downstreamGone.signal.aborted) sendGenerated(req, res, dedicated.error);
    return;
  }
  const upstreamStream = dedicated.stream;
  if (downstreamGone.signal.aborted) {
    upstreamStream.destroy();
    return;
  }
  const outgoing = http.request({
    createConnection: () => upstreamStream as never,
    method: req.method,
    path: plan.path,
    headers: upstreamRequestHeaders(req.headers, { ...plan, upstream: 'h1', websocket: true }),
    setHost: false,
  });
  outgoing.once('socket', (socket: Duplex) => socket.resume()); // proxy connections arrive paused
  outgoing.once('upgrade', (incoming: http.IncomingMessage, upgraded: Duplex, upstreamHead: Buffer) => {
    res.detachSocket(downstream as never); // its 'close' (which counts a response) will not come now
    countResponse(counters, 101, 'upstream');
    let head = `HTTP/1.1 ${incoming.statusCode} ${incoming.statusMessage}\r\n`;
    for (let i = 0; i < incoming.rawHeaders.length; i += 2) {
      if (!NOT_RELAYED_ON_101.has(incoming.rawHeaders[i]!.toLowerCase())) head += `${incoming.rawHeaders[i]}: ${incoming.rawHeaders[i + 1]}\r\n`;
    }
    downstream.write(`${head}\r\n`);
    if (upstreamHead.length > 0) downstream.write(upstreamHead);
    if (downstreamHead.length > 0) upgraded.write(downstreamHead);
    if (downstream.destroyed) upgraded.destroy();
    else splice(downstream, upgraded);
  });
  outgoing.once('response', (incoming: http.IncomingMessage) => {
    try {
      res.writeHead(incoming.statusCode ?? 502, incoming.statusMessage, downstreamResponseHeaders(incoming.headers));
    } catch {
      upstreamStream.destroy();
      sendGenerated(req, res, { reason: 'bad_upstream_response', message: 'the upstream sent a status line that cannot be relayed' });
      return;
    }
    incoming.pipe(res);
    incoming.once('error', () => res.destroy());
    res.once('finish', () => upstreamStream.destroy());
  });
  outgoing.on('error', () => {
    if (res.headersSent) downstream.destroy();
    else sendGenerated(req, res, { reason: 'upstream_closed', message: 'the upstream closed before answering the upgrade' });
    upstreamStream.destroy();
  });
  downstream.once('close', () => upstreamStream.destroy());
  outgoing.end();
}
