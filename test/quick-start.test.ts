import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CLI } from './helpers/process.js';
import { tempDir } from './helpers/fixtures.js';

const README = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The shell block under `<!-- quick-start -->` in README, line by line. */
function quickStart(): string[] {
  const block = /<!-- quick-start -->\n```sh\n([\s\S]*?)```/.exec(README);
  assert.ok(block, 'README has a quick-start block');
  return block[1]!.trimEnd().split('\n');
}

/**
 * README's quick start, run as written in bash from a fresh directory: the development engine, a local
 * web server, a token, `rivulet forward`, and curl fetching the page through the tunnel. Only its first
 * line changes: instead of `npm ci && npm link` (this checkout is already built), `rivulet` is put on the
 * PATH as a link to the built binary, which is what `npm link` does.
 */
test('README quick start, followed literally from another directory, publishes a local web server that curl fetches', { timeout: 60_000 }, async () => {
  const lines = quickStart();
  assert.match(lines[0]!, /^npm ci && npm link\b/);
  const bin = tempDir('rivulet-bin-');
  fs.chmodSync(CLI, 0o755);
  fs.symlinkSync(CLI, path.join(bin, 'rivulet'));
  const script = ['set -e', ...lines.slice(1)].join('\n');
  const checkout = tempDir('rivulet-checkout-');
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('RSTREAM_') && name !== 'NODE_EXTRA_CA_CERTS'));
  const shell = spawn('bash', ['-c', script], { cwd: checkout, env: { ...env, PATH: `${bin}:${process.env.PATH}` }, detached: true });
  let output = '';
  shell.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  shell.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  try {
    const code = await new Promise<number | null>((resolve) => shell.once('exit', resolve));
    assert.equal(code, 0, output);
    assert.match(output, /online: https:\/\/web\.t\.localhost:8443 -> localhost:3000/);
    assert.match(output, /hello from localhost:3000\n$/);
  } finally {
    // The engine, the web server and the agent were left running in the background, as a reader's are.
    try {
      process.kill(-shell.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
  }
});
