import fs from 'node:fs';
import net from 'node:net';
import { SignJWT } from 'jose';
import { ControlClient, clientDetails } from '../src/agent/control-client.js';
import { connectEngine, type EngineEndpoint } from '../src/agent/engine-connection.js';
import { StreamForwarder } from '../src/agent/stream-forwarder.js';
import { workerOfStream } from '../src/dataplane/streams.js';
import { encodeFrame } from '../src/protocol/frame.js';
import { emptyTunnelProperties } from '../src/protocol/messages.js';
import { BENCH_SECRET, benchCertificates, median, numberArgument, startBenchEngine, summary, writeResult } from './harness.js';
import type { ScenarioResult } from './report.js';

/**
 * Private-dial throughput (MB/s, one stream downloading from the upstream) and stream set-up rate
 * (streams/s: dial, one byte back, close), for three placements of the agent's proxy connection:
 *   same-worker  – pinned to the dialer's worker (the advertised affinity port),
 *   cross-worker – pinned to the other worker (every byte relayed worker↔worker),
 *   main-listener – no hint: wherever the kernel puts it (what you get with affinity off).
 * Runs are interleaved, medians reported. Usage: node dist/bench/private-dial.js [--runs N] [--mib M]
 */

const RUNS = numberArgument('runs', 5);
const MIB = numberArgument('mib', 256);
const RATE_SECONDS = numberArgument('seconds', 3);
const CONCURRENCY = 16;
const PLACEMENTS = ['same-worker', 'cross-worker', 'main-listener'] as const;
type Placement = (typeof PLACEMENTS)[number];


async function main(): Promise<void> {
  const certs = await benchCertificates();
  // Affinity ports below Linux's ephemeral range (32768+), so outgoing connections never hold them;
  // another program may, so a taken base is retried.
  let portBase = 0;
  let engine: Awaited<ReturnType<typeof startBenchEngine>> | undefined;
  for (let attempt = 0; !engine; attempt++) {
    portBase = 20000 + 2 * Math.floor(Math.random() * 6000);
    engine = await startBenchEngine(certs, {
      workers: 2,
      affinity: { enabled: true, port_base: portBase, advertise_host: '127.0.0.1' },
    }).catch((error: Error) => {
      if (attempt >= 5 || !/EADDRINUSE/.test(error.message)) throw error;
      return undefined;
    });
  }
  const token = await new SignJWT({ sub: 'bench' }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(BENCH_SECRET));
  const endpoint: EngineEndpoint = { host: '127.0.0.1', port: engine.publicPort, caPem: fs.readFileSync(certs.caCert, 'utf8') };

  // The upstream: sends `bytesPerStream` bytes on each connection, then ends.
  let bytesPerStream = 1;
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  const upstream = net.createServer((socket) => {
    socket.on('error', () => {});
    let left = bytesPerStream;
    const pump = (): void => {
      while (left > 0) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= piece.length;
        if (!socket.write(piece)) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const upstreamPort = (upstream.address() as net.AddressInfo).port;

  let placement: Placement = 'same-worker';
  let forwarder: StreamForwarder | undefined;
  const { client } = await ControlClient.open(endpoint, token, {
    onProxyConnReq: (request) => {
      const owner = workerOfStream(request.stream_id, 2)!;
      const port = placement === 'same-worker' ? portBase + owner : placement === 'cross-worker' ? portBase + 1 - owner : undefined;
      forwarder!.handle({ ...request, proxy_endpoint: port === undefined ? undefined : `127.0.0.1:${port}` });
    },
    onTunnelClosed: () => {},
  });
  const tunnel = await client.openTunnel({ ...emptyTunnelProperties(), publish: false, name: 'bench' });
  forwarder = new StreamForwarder({
    client,
    engine: endpoint,
    token,
    target: { host: '127.0.0.1', port: upstreamPort },
    knowsTunnel: (id) => id === tunnel.id,
    onConnection: () => {},
    onTargetFailure: (reason) => process.stderr.write(`target failed: ${reason}\n`),
  });

  /** One private dial reading everything the upstream sends; resolves with the byte count. */
  const dialOnce = async (): Promise<number> => {
    const socket = await connectEngine(endpoint);
    socket.write(encodeFrame({ type: 'stream_req', client_details: clientDetails(token), tunnel_id_name: 'bench', zero_rtt: true }));
    return new Promise((resolve) => {
      let received = 0;
      socket.on('data', (data: Buffer) => (received += data.length));
      socket.on('error', () => {});
      socket.once('end', () => {
        socket.end();
        resolve(received);
      });
    });
  };

  const throughput: Record<Placement, number[]> = { 'same-worker': [], 'cross-worker': [], 'main-listener': [] };
  const rate: Record<Placement, number[]> = { 'same-worker': [], 'cross-worker': [], 'main-listener': [] };
  const relayBefore = engine.counters.totals().relay_bytes;
  for (let run = 0; run < RUNS; run++) {
    for (const current of PLACEMENTS) {
      placement = current;
      bytesPerStream = MIB * 1024 * 1024;
      const started = process.hrtime.bigint();
      const received = await dialOnce();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (received !== bytesPerStream) throw new Error(`received ${received} of ${bytesPerStream} bytes`);
      throughput[current].push(received / seconds / 1e6);

      bytesPerStream = 1;
      let streams = 0;
      const deadline = Date.now() + RATE_SECONDS * 1000;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (Date.now() < deadline) if ((await dialOnce()) === 1) streams++;
        }),
      );
      rate[current].push(streams / RATE_SECONDS);
      process.stderr.write(
        `run ${run + 1}/${RUNS} ${current}: ${throughput[current].at(-1)!.toFixed(0)} MB/s, ${rate[current].at(-1)!.toFixed(0)} streams/s\n`,
      );
    }
  }
  const relayed = engine.counters.totals().relay_bytes - relayBefore;
  await client.close([tunnel.id!]);
  upstream.close();
  await engine.shutdown(500);

  const result: ScenarioResult = {
    scenario: 'private-dial',
    title: 'Private dial: one-stream throughput and stream set-up rate, by proxy-connection placement',
    runs: RUNS,
    rows: [
      { case: `one stream, ${MIB} MiB`, metric: 'throughput', unit: 'MB/s', higherIsBetter: true, series: Object.fromEntries(PLACEMENTS.map((p) => [p, summary(throughput[p])])) },
      { case: `${CONCURRENCY} concurrent dials`, metric: 'stream set-up', unit: 'streams/s', higherIsBetter: true, series: Object.fromEntries(PLACEMENTS.map((p) => [p, summary(rate[p])])) },
    ],
    targets: [],
    notes: [
      'same-worker: the agent dials the affinity port of the dialer\'s worker (dataplane.affinity); cross-worker: the other worker\'s, so every byte is relayed between workers; main-listener: no hint, the kernel picks (affinity off).',
      `Cross/same throughput ${(median(throughput['cross-worker']) / median(throughput['same-worker'])).toFixed(2)}; ${(relayed / 1e6).toFixed(0)} MB relayed between workers in all.`,
    ],
  };
  writeResult('private-dial', { ...result, mib_per_stream: MIB, rate_seconds: RATE_SECONDS, relay_bytes_total: relayed });
}

await main();
