import https from 'node:https';
import net from 'node:net';
import type tls from 'node:tls';
import { contextTrusting } from '../agent/engine-connection.js';
import type { EngineTarget } from './engine-target.js';
import { CommandError } from '../errors.js';

const REQUEST_TIMEOUT_MS = 15_000;

/** TLS options for the Engine API at `target`: SNI unless an IP literal, system roots plus the private CA. */
export function apiTlsOptions(target: EngineTarget): tls.ConnectionOptions {
  return {
    host: target.host,
    port: target.port,
    servername: net.isIP(target.host) ? undefined : target.host,
    ...(target.caPem ? { secureContext: contextTrusting(target.caPem) } : {}),
  };
}

/** `/api/...` with the `params` query (URL-encoded JSON), when there are params. */
export function apiPath(path: string, params: Record<string, unknown> | undefined): string {
  if (!params || Object.keys(params).length === 0) return path;
  return `${path}?params=${encodeURIComponent(JSON.stringify(params))}`;
}

/** GET an Engine API endpoint with the Bearer token; a non-2xx answer is a CommandError with the body's message. */
export function getJson(target: EngineTarget, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { ...apiTlsOptions(target), path, method: 'GET', headers: { authorization: `Bearer ${target.token}`, accept: 'application/json' }, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          if (res.statusCode! >= 200 && res.statusCode! < 300) {
            try {
              resolve(JSON.parse(body));
            } catch {
              reject(new CommandError(`the engine answered ${path} with something that is not JSON`));
            }
            return;
          }
          reject(new CommandError(`engine API error (${res.statusCode}): ${apiErrorMessage(body)}`));
        });
      },
    );
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${target.host}:${target.port} in ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', (error) => reject(error instanceof CommandError ? error : new CommandError(`cannot reach the engine: ${error.message}`)));
    req.end();
  });
}

/** The `message` of the API's error body, or the body itself. */
export function apiErrorMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // not JSON: print it as it is
  }
  return body.slice(0, 4096);
}
