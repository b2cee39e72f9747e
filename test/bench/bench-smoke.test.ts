import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { SuiteResult } from '../../bench/report.js';

/**
 * The benchmark suite's smoke mode (`node dist/bench/suite.js --smoke`): every scenario runs for real —
 * engine, agents, localtunnel, load generators — with tiny sizes, so the harness cannot rot. Asserts
 * the reports are complete, not any speed.
 */
/**
 * The smoke run takes about 100 s alone on 2 cores. Past this bound it is stopped and the test fails
 * with the suite's last progress lines, which name the scenario that did not finish.
 */
const SMOKE_BOUND_MS = 540_000;

test('bench suite, smoke mode: every scenario reports rows with figures, a table and a chart', { timeout: SMOKE_BOUND_MS + 60_000 }, async () => {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rivulet-bench-smoke-'));
  try {
    const suite = new URL('../../bench/suite.js', import.meta.url).pathname;
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [suite, '--smoke', '--out-dir', outDir], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const bound = setTimeout(() => {
        stderr += `\n[the smoke run passed ${SMOKE_BOUND_MS / 1000} s and was stopped]`;
        child.kill('SIGKILL');
      }, SMOKE_BOUND_MS);
      child.once('exit', (exitCode) => {
        clearTimeout(bound);
        resolve({ code: exitCode, stderr });
      });
    });
    assert.equal(code, 0, stderr.slice(-3000));
    const jsonFile = fs.readdirSync(outDir).find((name) => name.endsWith('.json'))!;
    const result = JSON.parse(fs.readFileSync(path.join(outDir, jsonFile), 'utf8')) as SuiteResult;
    assert.equal(result.mode, 'smoke');
    assert.deepEqual(
      result.scenarios.map((scenario) => scenario.scenario),
      ['small', 'keepalive', 'bulk', 'connections', 'private-dial', 'memory', 'pool', 'scaling', 'worker-death', 'control-plane', 'codec', 'soak'],
    );
    // The keep-alive scenario is a correctness check too: no request may hang or fail unexpectedly.
    const keepalive = result.scenarios.find((scenario) => scenario.scenario === 'keepalive')!;
    for (const target of keepalive.targets) assert.ok(target.met, `${target.target}: ${target.measured}\n${keepalive.notes.join('\n')}`);
    for (const scenario of result.scenarios) {
      assert.ok(scenario.rows.length > 0, scenario.scenario);
      for (const row of scenario.rows) {
        assert.ok(Object.keys(row.series).length >= 1, `${scenario.scenario}: ${row.case}`);
        for (const [name, figure] of Object.entries(row.series)) {
          assert.ok(Number.isFinite(figure.median) && figure.min <= figure.median && figure.median <= figure.max, `${scenario.scenario} ${row.case} ${name}: ${JSON.stringify(figure)}`);
        }
      }
      const svg = fs.readFileSync(path.join(outDir, 'charts', `${scenario.scenario}.svg`), 'utf8');
      assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"[\s\S]*<\/svg>\n$/);
    }
    // Throughput figures are real measurements, not placeholders.
    const small = result.scenarios.find((scenario) => scenario.scenario === 'small')!;
    assert.ok(small.rows.filter((row) => row.unit === 'req/s').every((row) => Object.values(row.series).every((figure) => figure.median > 0)));
    // Four series, or three where the localtunnel peer cannot run (Node >= 22), which the notes then say.
    const peerMissing = small.notes.some((note) => note.startsWith('No localtunnel series'));
    assert.equal(Object.keys(small.generatorCpu ?? {}).length, peerMissing ? 3 : 4);
    assert.ok(!peerMissing || !process.versions.node.startsWith('20.'), 'localtunnel runs on Node 20');
    const markdown = fs.readFileSync(path.join(outDir, 'latest.md'), 'utf8');
    for (const scenario of result.scenarios) assert.ok(markdown.includes(`## ${scenario.title}`), scenario.title);
    assert.match(markdown, /## Targets/);
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }
});
