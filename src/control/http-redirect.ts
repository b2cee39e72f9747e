import http from 'node:http';
import net from 'node:net';
import { isHostName, type ListenAddress } from '../config/address.js';

/**
 * The plain-HTTP listener (`http.enabled`, docs/configuration.md#keys): every request is redirected with 308 to the same host,
 * path and query over HTTPS on the public port. Not tunnel traffic, so it lives in the main thread.
 */
export async function startRedirectListener(address: ListenAddress, publicPort: number): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    const host = requestHost(request.headers.host);
    if (host === undefined) {
      response.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end('missing or invalid Host header\n');
      return;
    }
    const authority = publicPort === 443 ? host : `${host}:${publicPort}`;
    response.writeHead(308, { location: `https://${authority}${requestTarget(request.url ?? '/')}`, 'content-length': 0 });
    response.end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** The Host header without its port, or undefined when it is missing or not a name/IP literal. */
export function requestHost(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const bracketed = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/i.exec(header);
  if (bracketed) return net.isIPv6(bracketed[1]!) ? `[${bracketed[1]!.toLowerCase()}]` : undefined;
  const plain = /^([^:]+)(?::\d{1,5})?$/.exec(header);
  const name = plain?.[1]?.toLowerCase().replace(/\.$/, '');
  if (name === undefined) return undefined;
  return net.isIPv4(name) || isHostName(name) ? name : undefined;
}

/** Path and query of an origin-form or absolute-form request target. */
function requestTarget(url: string): string {
  if (url.startsWith('/')) return url;
  try {
    const parsed = new URL(url);
    return parsed.pathname + parsed.search;
  } catch {
    return '/';
  }
}
