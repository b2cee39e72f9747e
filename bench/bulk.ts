import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchCertificates, numberArgument, startEngineProcess, summary, writeResult } from './harness.js';
import { startBenchUpstream } from './load.js';
import { curlTransfer } from './curl-transfer.js';
import { comparisonTargets } from './comparison.js';
import type { BenchRow, ScenarioResult } from './report.js';

/**
 * Bulk transfer, one stream at a time with curl (HTTP/1.1): a download of --mib MiB and an upload of
 * the same size, through a published Rivulet tunnel vs the upstream directly over HTTPS vs the two-hop
 * Node TLS relay (the ceiling for anything built of Node TLS sockets) vs localtunnel. Runs interleaved.
 * Usage: node dist/bench/bulk.js [--runs N] [--mib M] [--out FILE]
 */

const RUNS = numberArgument('runs', 3);
const MIB = numberArgument('mib', 1024);

async function main(): Promise<void> {
  const certs = await benchCertificates();
  const uploadFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-bench-bulk-')), 'upload.bin');
  fs.writeFileSync(uploadFile, Buffer.alloc(MIB * 1024 * 1024, 0x61));
  const { port: enginePort, engine } = await startEngineProcess(certs, () => '{ workers: 2 }');
  const upstream = await startBenchUpstream(certs);
  const children = [engine, upstream.child];
  try {
    const { targets, peerUnavailable } = await comparisonTargets(certs, enginePort, upstream, children);

    const figures: Record<'download' | 'upload', Record<string, number[]>> = { download: {}, upload: {} };
    const failures: string[] = [];
    for (let run = 1; run <= RUNS; run++) {
      for (const direction of ['download', 'upload'] as const) {
        for (const target of targets) {
          const speed = await curlTransfer(target, certs.caCert, direction, MIB, uploadFile).catch((error: Error) => error);
          if (speed instanceof Error) {
            // Reported, not hidden: the row's figures then come from the runs that completed.
            failures.push(`run ${run} ${direction} ${target.name}: ${speed.message.split('\n')[0]}`);
            process.stderr.write(`run ${run}/${RUNS} ${direction} ${target.name}: FAILED ${speed.message}\n`);
            continue;
          }
          (figures[direction][target.name] ??= []).push(speed);
          process.stderr.write(`run ${run}/${RUNS} ${direction} ${target.name}: ${speed} MB/s\n`);
        }
      }
    }
    const rows: BenchRow[] = (['download', 'upload'] as const).map((direction) => ({
      case: `${direction} ${MIB} MiB`,
      metric: 'throughput',
      unit: 'MB/s',
      higherIsBetter: true,
      series: Object.fromEntries(Object.entries(figures[direction]).map(([name, values]) => [name, summary(values)])),
    }));
    const ratio = (direction: 'download' | 'upload'): number => rows.find((row) => row.case.startsWith(direction))!.series.rivulet!.median / rows.find((row) => row.case.startsWith(direction))!.series['node relay']!.median;
    const result: ScenarioResult = {
      scenario: 'bulk',
      title: 'Bulk transfer (one stream, curl): Rivulet vs direct HTTPS vs two-hop Node TLS relay vs localtunnel',
      runs: RUNS,
      rows,
      targets: (['download', 'upload'] as const).map((direction) => ({
        target: `bulk ${direction}: Rivulet ≥ 75 % of the two-hop Node TLS relay`,
        measured: `${Math.round(ratio(direction) * 100)} %`,
        met: ratio(direction) >= 0.75,
      })),
      notes: [
        'MB/s = 10^6 bytes per second, as curl reports it. localtunnel is plain HTTP.',
        ...(peerUnavailable ? [`No localtunnel series: ${peerUnavailable}.`] : []),
        ...failures.map((failure) => `Failed transfer — ${failure}.`),
      ],
    };
    writeResult('bulk', { ...result });
  } finally {
    for (const child of children.reverse()) await child.stop();
    fs.rmSync(path.dirname(uploadFile), { recursive: true, force: true });
  }
}

await main();
