import fs from 'node:fs';
import tls from 'node:tls';
import { Worker } from 'node:worker_threads';
import { benchCertificates, median, numberArgument, startBenchEngine, summary, writeResult } from './harness.js';

/**
 * New TLS connections per second: Rivulet's listener (ClientHello peek, SNI/ALPN dispatch, TLS in a
 * worker thread) against a plain Node TLS server in one worker thread, side by side in one run,
 * runs interleaved A B A B, medians reported. Both sides run one worker thread so the ratio is the
 * cost of dispatch. Usage: node dist/bench/handshakes.js [--runs N] [--seconds S] [--concurrency C]
 */

const RUNS = numberArgument('runs', 5);
const SECONDS = numberArgument('seconds', 3);
const CONCURRENCY = numberArgument('concurrency', 16);

async function handshakesPerSecond(port: number, ca: Buffer): Promise<number> {
  const deadline = Date.now() + SECONDS * 1000;
  let completed = 0;
  const loop = async (): Promise<void> => {
    while (Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ALPNProtocols: ['rstrm/1'], ca });
        socket.once('secureConnect', () => {
          completed++;
          socket.destroy();
          resolve();
        });
        socket.once('error', () => resolve());
      });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  return completed / SECONDS;
}

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const ca = fs.readFileSync(certs.caCert);
  const engine = await startBenchEngine(certs, { workers: 1 });
  const reference = new Worker(new URL('./tls-reference-server.js', import.meta.url), { workerData: { cert: certs.cert, key: certs.key } });
  const referencePort = await new Promise<number>((resolve) => reference.once('message', resolve));

  const rivulet: number[] = [];
  const plain: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    rivulet.push(await handshakesPerSecond(engine.publicPort, ca));
    plain.push(await handshakesPerSecond(referencePort, ca));
    process.stderr.write(`run ${run + 1}/${RUNS}: rivulet ${rivulet.at(-1)!.toFixed(0)}/s, plain node tls ${plain.at(-1)!.toFixed(0)}/s\n`);
  }
  reference.postMessage('stop');
  await engine.shutdown(500);

  writeResult('handshakes', {
    scenario: 'new TLS connections per second (handshake, then close), 1 worker thread each',
    runs: RUNS,
    seconds_per_run: SECONDS,
    concurrency: CONCURRENCY,
    rivulet: summary(rivulet),
    plain_node_tls: summary(plain),
    ratio_rivulet_to_plain: median(rivulet) / median(plain),
  });
}

await main();
