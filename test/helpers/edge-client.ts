import { execFile } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import tls from 'node:tls';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface EdgeReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * HTTP/1.1 to a published tunnel with Node's client. Node does not resolve `*.localhost`, so it dials
 * 127.0.0.1 and names the tunnel in SNI and Host.
 */
export function edgeRequest(
  port: number,
  ca: Buffer,
  hostname: string,
  options: { path?: string; method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer; agent?: https.Agent | false } = {},
): Promise<EdgeReply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        servername: hostname,
        ca,
        path: options.path ?? '/',
        method: options.method ?? 'GET',
        headers: { host: hostname, ...options.headers },
        agent: options.agent,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** An HTTP/2 session to the edge for `hostname` (ALPN h2 only). */
export function edgeSession(port: number, ca: Buffer, hostname: string): http2.ClientHttp2Session {
  const session = http2.connect(`https://127.0.0.1:${port}`, { servername: hostname, ca, ALPNProtocols: ['h2'] });
  session.on('error', () => {});
  return session;
}

export function h2Request(
  session: http2.ClientHttp2Session,
  authority: string,
  options: { path?: string; method?: string; headers?: http2.OutgoingHttpHeaders; body?: Buffer } = {},
): Promise<EdgeReply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': options.method ?? 'GET',
      ':path': options.path ?? '/',
      ':authority': authority,
      ...options.headers,
    });
    let status = 0;
    let headers: http.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      status = Number(h[':status']);
      headers = h as http.IncomingHttpHeaders;
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve({ status, headers, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    stream.end(options.body);
  });
}

/** curl against the edge (it resolves `*.localhost` itself); status, headers block, body and HTTP version. */
export async function curl(
  caFile: string,
  url: string,
  args: string[] = [],
): Promise<{ status: number; error: string; headers: string; body: string; version: string }> {
  const { stdout } = await run('curl', ['-sS', '-m', '30', '--cacert', caFile, '-D', '-', '-o', '-', '-w', '\n%{http_code} %{http_version}', ...args, url], {
    maxBuffer: 64 * 1024 * 1024,
  });
  const lines = stdout.split('\n');
  const [status, version] = lines.at(-1)!.split(' ');
  const split = stdout.search(/\r\n\r\n/);
  const headers = stdout.slice(0, split);
  const error = /x-rivulet-error: (\S+)/i.exec(headers)?.[1] ?? '';
  return { status: Number(status), error, headers, body: stdout.slice(split + 4, stdout.lastIndexOf('\n')), version: version! };
}

/** A raw HTTP/1.1-over-TLS connection to the edge, for bytes no HTTP client would send. */
export async function rawEdgeConnection(port: number, ca: Buffer, hostname: string): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: hostname, ca, ALPNProtocols: ['http/1.1'] });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

/** Reads HTTP/1.1 responses (Content-Length or chunked) from a socket, one after another. */
export class WireReader {
  private buffered = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private ended = false;

  constructor(socket: tls.TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.wake?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  async response(headOnly: boolean): Promise<{ status: number; headers: Map<string, string>; body: Buffer }> {
    const headEnd = await this.until(() => {
      const at = this.buffered.indexOf('\r\n\r\n');
      return at < 0 ? undefined : at;
    });
    const lines = this.buffered.subarray(0, headEnd).toString('latin1').split('\r\n');
    this.buffered = this.buffered.subarray(headEnd + 4);
    const status = Number(lines[0]!.split(' ')[1]);
    const headers = new Map(lines.slice(1).map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
    if (headOnly) return { status, headers, body: Buffer.alloc(0) };
    if (headers.get('transfer-encoding') === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = await this.until(() => (this.buffered.indexOf('\r\n') < 0 ? undefined : this.buffered.indexOf('\r\n')));
        const size = parseInt(this.buffered.subarray(0, lineEnd).toString('latin1'), 16);
        await this.until(() => (this.buffered.length >= lineEnd + 2 + size + 2 ? true : undefined));
        parts.push(Buffer.from(this.buffered.subarray(lineEnd + 2, lineEnd + 2 + size)));
        this.buffered = this.buffered.subarray(lineEnd + 2 + size + 2);
        if (size === 0) return { status, headers, body: Buffer.concat(parts) };
      }
    }
    const length = Number(headers.get('content-length'));
    await this.until(() => (this.buffered.length >= length ? true : undefined));
    const body = Buffer.from(this.buffered.subarray(0, length));
    this.buffered = this.buffered.subarray(length);
    return { status, headers, body };
  }

  private async until<T>(found: () => T | undefined): Promise<T> {
    for (;;) {
      const value = found();
      if (value !== undefined) return value;
      if (this.ended) throw new Error('the connection closed before the answer was complete');
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}
