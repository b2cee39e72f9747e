import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Worker } from 'node:worker_threads';
import { writeDevCertificates } from '../src/certs/dev-ca.js';
import { buildConfig } from '../src/config/load.js';
import { startEngine } from '../src/control/engine.js';
import { createLogger } from '../src/log.js';

/**
 * New TLS connections per second: Rivulet's listener (ClientHello peek, SNI/ALPN dispatch, TLS in a
 * worker thread) against a plain Node TLS server in one worker thread, side by side in one run,
 * runs interleaved A B A B, medians reported. Both sides run one worker thread so the ratio is the
 * cost of dispatch. Usage: node dist/bench/handshakes.js [--runs N] [--seconds S] [--concurrency C]
 */

const argument = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
};
const RUNS = argument('runs', 5);
const SECONDS = argument('seconds', 3);
const CONCURRENCY = argument('concurrency', 16);

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

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-bench-'));
  const certs = await writeDevCertificates({ host: 'localhost', extraSans: [], outDir: dir, days: 2, force: true });
  const ca = fs.readFileSync(certs.caCert);
  const tree = {
    engine: { host: 'localhost', log_level: 'error' },
    tls: { enabled: true, listen_addr: '127.0.0.1:0' },
    certs: { static: { enabled: true, cert_file: certs.cert, key_file: certs.key } },
    auth: { jwt: { enabled: true, token_jwt_secret: 'bench-secret-bench-secret-bench-secret' } },
    dataplane: { workers: 1 },
  };
  const engine = await startEngine(buildConfig(tree, {}).config, createLogger('error'), (reason) => {
    throw new Error(reason);
  });
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

  const result = {
    scenario: 'new TLS connections per second (handshake, then close), 1 worker thread each',
    date: new Date().toISOString(),
    host: os.hostname(),
    cpus: os.cpus().length,
    node: process.version,
    runs: RUNS,
    seconds_per_run: SECONDS,
    concurrency: CONCURRENCY,
    rivulet: { median: median(rivulet), min: Math.min(...rivulet), max: Math.max(...rivulet) },
    plain_node_tls: { median: median(plain), min: Math.min(...plain), max: Math.max(...plain) },
    ratio_rivulet_to_plain: median(rivulet) / median(plain),
  };
  const out = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'bench', 'results', 'handshakes.json');
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
}

await main();
