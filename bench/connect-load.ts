import tls from 'node:tls';

/**
 * A load generator for new connections, in its own process: `concurrency` loops, each opening a TLS
 * connection (a full handshake, no session resumption), sending one HTTP/1.1 request with
 * `Connection: close`, reading the response to its end, and starting over. Prints
 * `{"completed":…,"errors":…,"perSecond":…,"p50":…,"p99":…}` (latencies in ms).
 * Usage: node dist/bench/connect-load.js <port> <servername> <concurrency> <seconds>
 */
const [port, servername, concurrency, seconds] = process.argv.slice(2) as [string, string, string, string];
const request = Buffer.from(`GET /small HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
const deadline = Date.now() + Number(seconds) * 1000;
const latencies: number[] = [];
let errors = 0;

function once(): Promise<void> {
  return new Promise((resolve) => {
    const started = performance.now();
    let head = '';
    const socket = tls.connect({ host: '127.0.0.1', port: Number(port), servername, rejectUnauthorized: false }, () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      if (head.length < 16) head += chunk.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (head.startsWith('HTTP/1.1 200')) latencies.push(performance.now() - started);
      else errors++;
      resolve();
    });
    socket.on('end', () => socket.end());
  });
}

async function loop(): Promise<void> {
  while (Date.now() < deadline) await once();
}

const started = Date.now();
await Promise.all(Array.from({ length: Number(concurrency) }, loop));
const elapsed = (Date.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const percentile = (p: number): number => Math.round((latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0) * 10) / 10;
process.stdout.write(
  `${JSON.stringify({ completed: latencies.length, errors, perSecond: Math.round(latencies.length / elapsed), p50: percentile(0.5), p99: percentile(0.99) })}\n`,
);
