import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { edgeSession } from './helpers/edge-client.js';
import { sleep, startTestEngine, type TestEngine } from './helpers/engine.js';
import type { RunningCli } from './helpers/process.js';
import { startForward } from './helpers/forward.js';
import { mintToken } from './helpers/rstrm-agent.js';
import { listenUpstream, patternBytes } from './helpers/upstream-server.js';

/**
 * A response cut after its head must never look complete (docs/http-edge.md#decisions): the HTTP/1.1 connection
 * closes without the final chunk or the full length, the h2 stream ends with RST_STREAM
 * INTERNAL_ERROR, never a clean end. Cut by the agent dying (SIGKILL) or the upstream resetting its
 * connection, for Content-Length and chunked answers, seen by Node's clients and by curl.
 */
const FULL = 1_000_000;
const SENT = 300_000;

let t: TestEngine;
let port: number;
let token: string;
let upstream: http.Server;
let upstreamH2c: http2.Http2Server;
const upstreamPorts = { h1: 0, h2c: 0 };
/** Called by the upstream once it wrote SENT bytes of an answer it will never finish. */
let onPartWritten: (() => void) | undefined;

before(async () => {
  t = await startTestEngine({ timeouts: { stream_request_seconds: 3 } });
  port = t.engine.publicPort;
  token = await mintToken();
  // /cut?framing=length|chunked&how=reset|hold: the head and SENT bytes of FULL, then a TCP reset or nothing.
  const cutHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream' };
    if (url.searchParams.get('framing') === 'length') headers['content-length'] = FULL;
    res.writeHead(200, headers);
    (res as http.ServerResponse).write(patternBytes(SENT), () => {
      onPartWritten?.();
      if (url.searchParams.get('how') === 'reset') setTimeout(() => (req.socket as net.Socket).resetAndDestroy(), 200);
    });
  };
  upstream = http.createServer(cutHandler);
  upstreamH2c = http2.createServer(cutHandler);
  upstreamPorts.h1 = await listenUpstream(upstream);
  upstreamPorts.h2c = await listenUpstream(upstreamH2c as never);
});
after(async () => {
  upstream.closeAllConnections();
  upstream.close();
  upstreamH2c.close();
  await t.stop();
});

async function forward(label: string, upstreamVersion: 'h1' | 'h2c'): Promise<RunningCli> {
  const version = upstreamVersion === 'h2c' ? ['--http-version', 'h2c'] : [];
  return startForward(t, token, upstreamPorts[upstreamVersion], ['--host', label, ...version]);
}

type Outcome = { how: 'complete' | 'error'; received: number; detail: string };

function nodeH1(hostname: string, path: string): Promise<Outcome> {
  return new Promise((resolve) => {
    let received = 0;
    // A kept-alive agent, as browsers and client libraries use: the cut must still reach it as an error.
    const agent = new https.Agent({ keepAlive: true });
    const req = https.request({ host: '127.0.0.1', port, servername: hostname, ca: t.ca, path, headers: { host: hostname }, agent }, (res) => {
      res.on('data', (chunk: Buffer) => (received += chunk.length));
      res.on('end', () => {
        agent.destroy();
        resolve({ how: res.complete ? 'complete' : 'error', received, detail: 'end' });
      });
      res.on('error', (error) => resolve({ how: 'error', received, detail: error.message }));
    });
    req.on('error', (error) => resolve({ how: 'error', received, detail: error.message }));
    req.end();
  });
}

function nodeH2(hostname: string, path: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const session = edgeSession(port, t.ca, hostname);
    let received = 0;
    const stream = session.request({ ':path': path, ':authority': hostname });
    stream.on('data', (chunk: Buffer) => (received += chunk.length));
    stream.on('end', () => resolve({ how: 'complete', received, detail: `end, rstCode ${stream.rstCode}` }));
    stream.on('error', (error) => resolve({ how: 'error', received, detail: error.message }));
    stream.on('close', () => {
      session.close();
      resolve({ how: stream.rstCode === 0 && stream.readableEnded ? 'complete' : 'error', received, detail: `close, rstCode ${stream.rstCode}` });
    });
    stream.end();
  });
}

function curl(version: '--http1.1' | '--http2', hostname: string, path: string): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      ['-sS', '-m', '20', version, '--cacert', t.certs.caCert, '-o', '/dev/null', '-w', '%{size_download}', `https://${hostname}:${port}${path}`],
      (error, stdout, stderr) => {
        resolve({ how: error ? 'error' : 'complete', received: Number(stdout), detail: `exit ${error?.code ?? 0} ${stderr.trim()}` });
      },
    );
  });
}

const CLIENTS = {
  'Node https (HTTP/1.1)': nodeH1,
  'Node http2': nodeH2,
  'curl --http1.1': (hostname: string, path: string) => curl('--http1.1', hostname, path),
  'curl --http2': (hostname: string, path: string) => curl('--http2', hostname, path),
} as const;

let tunnels = 0;

const CASES = [
  ...(['agent SIGKILL', 'upstream reset'] as const).map((how) => ({ how, upstream: 'h1' as const, clients: Object.keys(CLIENTS) })),
  // The h2c upstream ends its stream by RST_STREAM or a dead session rather than a short body.
  { how: 'upstream reset' as const, upstream: 'h2c' as const, clients: ['Node https (HTTP/1.1)', 'curl --http2'] },
];

for (const { how, upstream: upstreamVersion, clients } of CASES) {
  describe(`a response cut after its head (${how}, ${upstreamVersion} upstream)`, () => {
    for (const framing of ['length', 'chunked'] as const) {
      for (const client of clients) {
        const fetch = CLIENTS[client as keyof typeof CLIENTS];
        test(`${framing === 'length' ? 'Content-Length' : 'chunked'} answer, ${client}: the client sees an error, not a complete body`, async () => {
          const label = `cut${tunnels++}`;
          const agent = await forward(label, upstreamVersion);
          try {
            onPartWritten = () => {
              if (how === 'agent SIGKILL') void sleep(300).then(() => agent.child.kill('SIGKILL'));
            };
            const outcome = await fetch(`${label}.t.localhost`, `/cut?framing=${framing}&how=${how === 'upstream reset' ? 'reset' : 'hold'}`);
            assert.equal(outcome.how, 'error', `${client} took a cut answer for a whole one (${outcome.received} bytes; ${outcome.detail})`);
            assert.ok(outcome.received >= SENT / 2 && outcome.received < FULL, `the head and part of the body arrived first (${outcome.received} bytes; ${outcome.detail})`);
          } finally {
            onPartWritten = undefined;
            agent.child.kill('SIGKILL');
            await agent.exited;
          }
        });
      }
    }
  });
}
