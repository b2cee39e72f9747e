import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringArgument } from './harness.js';
import { writeReports, type ScenarioResult, type SuiteResult } from './report.js';

/**
 * `npm run bench` — every scenario side by side with its references, each scenario its own child
 * process (which starts its own engine, agents, peers and load generators), then one JSON file, a
 * Markdown table and SVG charts under bench/results/.
 *   (default)  quick pass, about 3 minutes on 2 cores;
 *   --full     every scenario at full size, several runs each (about 15 minutes);
 *   --smoke    a few seconds each with tiny sizes, written to --out-dir (what `npm test` runs);
 *   --only a,b run only these scenarios, reported as <a+b>.md next to latest.md (not replacing it);
 *   --out-dir DIR write there instead of bench/results.
 * `soak` (long mixed traffic, watched for leaks) runs only when named: `--only soak` (2 minutes, or 30
 * with --full); smoke mode runs it too, for 6 s.
 */

type Mode = SuiteResult['mode'];

interface Scenario {
  name: string;
  script: string;
  args: Record<Mode, string[]>;
  /** Left out of quick and full runs unless named in --only. */
  onlyWhenNamed?: boolean;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'small',
    script: 'small.js',
    args: {
      quick: ['--runs', '2', '--seconds', '2', '--connections', '1,50,200'],
      full: ['--runs', '5', '--seconds', '5', '--connections', '1,50,200'],
      smoke: ['--runs', '1', '--seconds', '1', '--connections', '1,10'],
    },
  },
  {
    name: 'keepalive',
    script: 'keepalive.js',
    args: {
      quick: ['--requests', '10000'],
      full: ['--requests', '100000'],
      smoke: ['--requests', '300', '--clients', '6', '--h2-clients', '2'],
    },
  },
  {
    name: 'bulk',
    script: 'bulk.js',
    args: { quick: ['--runs', '2', '--mib', '128'], full: ['--runs', '5', '--mib', '1024'], smoke: ['--runs', '1', '--mib', '4'] },
  },
  {
    name: 'connections',
    script: 'connections.js',
    args: {
      quick: ['--runs', '2', '--seconds', '2'],
      full: ['--runs', '5', '--seconds', '5'],
      smoke: ['--runs', '1', '--seconds', '1', '--concurrency', '4'],
    },
  },
  {
    name: 'private-dial',
    script: 'private-dial.js',
    args: {
      quick: ['--runs', '2', '--mib', '64', '--seconds', '1'],
      full: ['--runs', '5', '--mib', '256', '--seconds', '3'],
      smoke: ['--runs', '1', '--mib', '4', '--seconds', '1'],
    },
  },
  {
    name: 'memory',
    script: 'memory.js',
    args: { quick: ['--runs', '1', '--counts', '1000'], full: ['--runs', '3', '--counts', '1000,5000'], smoke: ['--runs', '1', '--counts', '50'] },
  },
  {
    name: 'pool',
    script: 'pool.js',
    args: {
      quick: ['--runs', '2', '--seconds', '2', '--mib', '64', '--failover-seconds', '6'],
      full: ['--runs', '5', '--seconds', '5', '--mib', '256', '--failover-seconds', '10'],
      smoke: ['--runs', '1', '--seconds', '1', '--mib', '4', '--failover-seconds', '3'],
    },
  },
  {
    name: 'scaling',
    script: 'scaling.js',
    args: {
      quick: ['--runs', '2', '--seconds', '2'],
      full: ['--runs', '5', '--seconds', '5'],
      smoke: ['--runs', '1', '--seconds', '1', '--connections', '10'],
    },
  },
  {
    name: 'worker-death',
    script: 'worker-death.js',
    args: {
      quick: ['--runs', '1', '--seconds', '6'],
      full: ['--runs', '3', '--seconds', '6'],
      smoke: ['--runs', '1', '--seconds', '3', '--connections', '10'],
    },
  },
  {
    name: 'control-plane',
    script: 'api.js',
    args: {
      quick: ['--tunnels', '10000', '--subscribers', '200', '--lists', '10', '--events', '5'],
      full: [],
      smoke: ['--tunnels', '200', '--agents', '4', '--subscribers', '10', '--lists', '3', '--events', '2'],
    },
  },
  {
    name: 'codec',
    script: 'codec.js',
    args: {
      quick: ['--runs', '3', '--seconds', '0.2'],
      full: ['--runs', '5', '--seconds', '0.5'],
      smoke: ['--runs', '1', '--seconds', '0.02'],
    },
  },
  {
    name: 'soak',
    script: 'soak.js',
    onlyWhenNamed: true,
    args: {
      quick: ['--minutes', '2', '--sample-seconds', '10'],
      full: ['--minutes', '30', '--sample-seconds', '60'],
      smoke: ['--minutes', '0.1', '--sample-seconds', '2', '--churn-seconds', '2'],
    },
  },
];

const HERE = path.dirname(new URL(import.meta.url).pathname);

async function main(): Promise<void> {
  const mode: Mode = process.argv.includes('--full') ? 'full' : process.argv.includes('--smoke') ? 'smoke' : 'quick';
  const only = stringArgument('only')?.split(',');
  const outDir = path.resolve(stringArgument('out-dir') ?? path.join(HERE, '..', '..', 'bench', 'results'));
  const selected = SCENARIOS.filter((scenario) => (only ? only.includes(scenario.name) : mode === 'smoke' || !scenario.onlyWhenNamed));
  if (only && selected.length !== only.length) throw new Error(`unknown scenario in --only; known: ${SCENARIOS.map((scenario) => scenario.name).join(', ')}`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-bench-suite-'));
  const started = Date.now();
  const progress = new Progress(selected.length, started);
  const scenarios: ScenarioResult[] = [];
  const failures: NonNullable<SuiteResult['failures']> = [];
  try {
    for (const [index, scenario] of selected.entries()) {
      const out = path.join(work, `${scenario.name}.json`);
      progress.begin(index, scenario.name);
      try {
        await runScenario(path.join(HERE, scenario.script), [...scenario.args[mode], '--out', out], (line) => progress.update(line));
      } catch (error) {
        // One scenario failing does not lose the others' figures: it is reported, and the run exits 1.
        failures.push({ scenario: scenario.name, error: (error as Error).message });
        progress.end(`FAILED: ${(error as Error).message.split('\n')[0]}`);
        continue;
      }
      const result = JSON.parse(fs.readFileSync(out, 'utf8')) as ScenarioResult;
      scenarios.push(result);
      progress.end(summaryLine(result));
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const cpus = os.cpus();
  const result: SuiteResult = {
    mode,
    date: new Date().toISOString(),
    host: os.hostname(),
    machine: {
      cpus: cpus.length,
      model: cpus[0]?.model.trim() ?? 'unknown',
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      kernel: os.release(),
    },
    durationSeconds: (Date.now() - started) / 1000,
    scenarios,
    ...(failures.length > 0 ? { failures } : {}),
  };
  const written = writeReports(result, outDir, only?.join('+'));
  process.stderr.write(`\nresults: ${written.json}\ntable:   ${written.markdown}\ncharts:  ${path.dirname(written.charts[0] ?? outDir)}/\n`);
  for (const failure of failures) process.stderr.write(`\nscenario ${failure.scenario} FAILED:\n${failure.error}\n`);
  if (failures.length > 0) process.exitCode = 1;
}

/** One scenario script to its end; its stderr lines are its progress. */
function runScenario(script: string, args: string[], onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let pending = '';
    let tail: string[] = [];
    child.stderr.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        tail = [...tail.slice(-20), line];
        onLine(line);
      }
    });
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${path.basename(script)} failed (${signal ?? `exit ${code}`}):\n${tail.join('\n')}`));
    });
  });
}

function summaryLine(result: ScenarioResult): string {
  const targets = result.targets.map((target) => `${target.met ? 'met' : 'missed'}: ${target.measured}`);
  return targets.length > 0 ? targets.join('; ') : `${result.rows.length} rows`;
}

/** A live status line on a terminal (one line per scenario otherwise, for CI logs). */
class Progress {
  private readonly live = process.stderr.isTTY === true;
  private name = '';
  private index = 0;
  private scenarioStarted = 0;

  constructor(
    private readonly total: number,
    private readonly suiteStarted: number,
  ) {}

  begin(index: number, name: string): void {
    this.index = index;
    this.name = name;
    this.scenarioStarted = Date.now();
    this.show('starting');
  }

  update(line: string): void {
    this.show(line);
  }

  end(summary: string): void {
    const seconds = Math.round((Date.now() - this.scenarioStarted) / 1000);
    if (this.live) process.stderr.write('\r\x1b[2K');
    process.stderr.write(`${this.prefix()} done in ${seconds} s — ${summary}\n`);
  }

  private show(status: string): void {
    const line = `${this.prefix()} ${status}`;
    if (this.live) process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns ?? 120) - 1)}`);
    else process.stderr.write(`${line}\n`);
  }

  private prefix(): string {
    const width = 20;
    const filled = Math.round((this.index / this.total) * width);
    const elapsed = Math.round((Date.now() - this.suiteStarted) / 1000);
    return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.index + 1}/${this.total} ${this.name} (${elapsed} s)`;
  }
}

await main();
