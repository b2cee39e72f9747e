import fs from 'node:fs';
import path from 'node:path';
import type { Summary } from './harness.js';

/**
 * What every scenario of the suite reports, and how the suite renders it: one JSON file per run, a
 * Markdown table (latest.md) and one SVG chart per scenario.
 */

/** One measured figure for several series (tunnel, direct, …) measured side by side. */
export interface BenchRow {
  /** What was varied inside the scenario, e.g. `50 connections` or `download 1024 MiB`. */
  case: string;
  metric: string;
  unit: string;
  higherIsBetter: boolean;
  /** Series name → the median and min–max of its runs. */
  series: Record<string, Summary>;
}

/** A target from the issue, reported as met or missed by how much. */
export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean;
}

export interface ScenarioResult {
  scenario: string;
  title: string;
  runs: number;
  rows: BenchRow[];
  targets: TargetCheck[];
  /** Load generator CPU, in cores used while it ran (median over its runs), per generator. */
  generatorCpu?: Record<string, number>;
  notes: string[];
}

export interface SuiteResult {
  mode: 'quick' | 'full' | 'smoke';
  date: string;
  host: string;
  machine: { cpus: number; model: string; memoryGiB: number; node: string; kernel: string };
  durationSeconds: number;
  scenarios: ScenarioResult[];
  /** Scenarios that failed to run, with the end of their output; the others are still reported. */
  failures?: Array<{ scenario: string; error: string }>;
}

/** Writes the run's files; a run of named scenarios only (`name`) gets its own instead of latest.md. */
export function writeReports(result: SuiteResult, outDir: string, name?: string): { json: string; markdown: string; charts: string[] } {
  fs.mkdirSync(outDir, { recursive: true });
  const stamp = result.date.slice(0, 10);
  const json = path.join(outDir, `${stamp}-${result.host}${name ? `-${name}` : ''}.json`);
  fs.writeFileSync(json, JSON.stringify(result, null, 2) + '\n');
  const charts: string[] = [];
  // A named run's charts go beside latest.md's, not over them.
  const chartDir = name ? `charts-${name}` : 'charts';
  for (const scenario of result.scenarios) {
    const file = path.join(outDir, chartDir, `${scenario.scenario}.svg`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, chart(scenario));
    charts.push(file);
  }
  const markdown = path.join(outDir, `${name ?? 'latest'}.md`);
  const benchReadme = path.relative(outDir, path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'bench', 'README.md'));
  fs.writeFileSync(markdown, renderMarkdown(result, path.basename(json), benchReadme, chartDir));
  return { json, markdown, charts };
}

export function renderMarkdown(result: SuiteResult, jsonName: string, benchReadme: string, chartDir: string): string {
  const { machine } = result;
  const lines = [
    `# Rivulet benchmark — ${result.mode} run`,
    '',
    `${result.date} on \`${result.host}\`: ${machine.cpus} × ${machine.model}, ${machine.memoryGiB} GiB, Node ${machine.node}, Linux ${machine.kernel}. ` +
      `Took ${Math.round(result.durationSeconds)} s. Raw figures: [${jsonName}](${jsonName}). How to read this: [bench/README.md](${benchReadme}).`,
    '',
    'Each cell is the median of the runs, with the min–max in brackets; series of one row were measured in the same run, interleaved.',
    '',
  ];
  if (result.failures?.length) {
    lines.push('## Scenarios that failed', '');
    for (const failure of result.failures) lines.push(`- \`${failure.scenario}\`:`, '', '  ```', ...failure.error.split('\n').map((line) => `  ${line}`), '  ```', '');
  }
  const allTargets = result.scenarios.flatMap((scenario) => scenario.targets);
  if (allTargets.length > 0) {
    lines.push('## Targets', '', '| Target | Measured | |', '|---|---|---|');
    for (const target of allTargets) lines.push(`| ${target.target} | ${target.measured} | ${target.met ? 'met' : '**missed**'} |`);
    lines.push('');
  }
  for (const scenario of result.scenarios) {
    lines.push(`## ${scenario.title}`, '', `![${scenario.scenario}](${chartDir}/${scenario.scenario}.svg)`, '');
    const seriesNames = [...new Set(scenario.rows.flatMap((row) => Object.keys(row.series)))];
    lines.push(`| Case | Metric | ${seriesNames.join(' | ')} |`, `|---|---|${seriesNames.map(() => '---:').join('|')}|`);
    for (const row of scenario.rows) {
      const cells = seriesNames.map((name) => (row.series[name] ? cell(row.series[name]!) : '—'));
      lines.push(`| ${row.case} | ${row.metric} (${row.unit}) | ${cells.join(' | ')} |`);
    }
    lines.push('', `${scenario.runs} run(s) per series.`);
    if (scenario.generatorCpu) {
      const cpu = Object.entries(scenario.generatorCpu).map(([name, cores]) => `${name} ${cores.toFixed(2)} cores`);
      lines.push(`Load generator CPU while running: ${cpu.join(', ')}.`);
    }
    for (const note of scenario.notes) lines.push(note);
    lines.push('');
  }
  return lines.join('\n');
}

function cell(summary: Summary): string {
  const spread = summary.min === summary.max ? '' : ` [${format(summary.min)}–${format(summary.max)}]`;
  return `${format(summary.median)}${spread}`;
}

function format(value: number): string {
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

const PALETTE = ['#2f6fdb', '#7a7a7a', '#e08a1e', '#3aa55d', '#b04fc4', '#c0392b'];

/**
 * One horizontal bar group per row, each scaled to its own largest value (rows carry different
 * units); the bar is the median, the whisker the min–max.
 */
export function chart(scenario: ScenarioResult): string {
  const width = 760;
  const labelWidth = 150;
  const barArea = width - labelWidth - 110;
  const barHeight = 14;
  const seriesNames = [...new Set(scenario.rows.flatMap((row) => Object.keys(row.series)))];
  const colour = (name: string): string => PALETTE[seriesNames.indexOf(name) % PALETTE.length]!;
  const parts: string[] = [];
  let y = 44;
  for (const row of scenario.rows) {
    const entries = Object.entries(row.series);
    const scale = Math.max(...entries.map(([, summary]) => summary.max), 1e-9);
    parts.push(`<text x="8" y="${y}" class="row">${escape(`${row.case} — ${row.metric} (${row.unit}, ${row.higherIsBetter ? 'higher' : 'lower'} is better)`)}</text>`);
    y += 8;
    for (const [name, summary] of entries) {
      const barWidth = (summary.median / scale) * barArea;
      const low = labelWidth + (summary.min / scale) * barArea;
      const high = labelWidth + (summary.max / scale) * barArea;
      const middle = y + barHeight / 2;
      parts.push(
        `<text x="${labelWidth - 6}" y="${middle + 4}" text-anchor="end">${escape(name)}</text>`,
        `<rect x="${labelWidth}" y="${y}" width="${barWidth.toFixed(1)}" height="${barHeight}" fill="${colour(name)}"/>`,
        `<line x1="${low.toFixed(1)}" x2="${high.toFixed(1)}" y1="${middle}" y2="${middle}" stroke="#222" stroke-width="1"/>`,
        `<text x="${(Math.max(high, labelWidth + barWidth) + 6).toFixed(1)}" y="${middle + 4}">${escape(format(summary.median))}</text>`,
      );
      y += barHeight + 4;
    }
    y += 18;
  }
  const height = y;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    '<style>.title{font-size:14px;font-weight:bold}.row{font-weight:bold}</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="8" y="20" class="title">${escape(scenario.title)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
