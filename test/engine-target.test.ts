import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseEngineAddress, resolveTarget } from '../src/cli/engine-target.js';
import { tempDir } from './helpers/fixtures.js';
import { CommandError, UsageError } from '../src/errors.js';

test('engine, token and CA: flag > env > context file (rstream layout)', () => {
  const dir = tempDir();
  const ca = path.join(dir, 'ca.crt');
  fs.writeFileSync(ca, 'PEM\n');
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(
    config,
    [
      'version: 1',
      'defaults: { context: { name: dev } }',
      'contexts:',
      `  - { name: dev, engine: "ctx.example.com:8443", engineTlsCaFile: ${ca}, apiUrl: ignored, auth: { token: { storage: { kind: inline, value: ctx-token } } } }`,
      '  - { name: other, engine: other.example.com }',
    ].join('\n'),
  );
  const env = { RSTREAM_CONFIG: config };
  assert.deepEqual(resolveTarget({}, env), { host: 'ctx.example.com', port: 8443, token: 'ctx-token', caPem: 'PEM' });
  assert.deepEqual(resolveTarget({}, { ...env, RSTREAM_ENGINE: 'env.example.com', RSTREAM_AUTHENTICATION_TOKEN: 'env-token' }), {
    host: 'env.example.com',
    port: 443,
    token: 'env-token',
    caPem: 'PEM',
  });
  const flags = resolveTarget({ engine: '[::1]:9443', token: 'flag-token' }, { ...env, RSTREAM_ENGINE: 'env.example.com' });
  assert.deepEqual([flags.host, flags.port, flags.token], ['::1', 9443, 'flag-token']);
  assert.equal(resolveTarget({ context: 'other' }, env, false).host, 'other.example.com');
  assert.throws(() => resolveTarget({ context: 'missing' }, env), UsageError);
});

test('missing engine and missing token are command errors (exit 1)', () => {
  const env = { RSTREAM_CONFIG: '/nonexistent/config.yaml' };
  assert.throws(() => resolveTarget({}, env), (error: Error) => error instanceof CommandError && /engine is required/.test(error.message));
  assert.throws(() => resolveTarget({ engine: 'e.example.com' }, env), (error: Error) => error instanceof CommandError && /missing authentication token/.test(error.message));
});

test('engine addresses', () => {
  assert.deepEqual(parseEngineAddress('edge.example.com'), { host: 'edge.example.com', port: 443 });
  assert.deepEqual(parseEngineAddress('127.0.0.1:8443'), { host: '127.0.0.1', port: 8443 });
  assert.throws(() => parseEngineAddress('https://edge'), UsageError);
  assert.throws(() => parseEngineAddress('edge:70000'), UsageError);
});
