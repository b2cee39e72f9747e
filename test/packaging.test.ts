import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import YAML from 'yaml';

/**
 * No Docker engine runs here, so the image's and compose's promises are checked by reading them: what the
 * build context may never carry, and what compose must do for the engine to be reachable and pullable.
 */
const read = (name: string): string => fs.readFileSync(new URL(`../../${name}`, import.meta.url), 'utf8');

test('.dockerignore keeps keys, secrets, development state and local builds out of the build context', () => {
  const ignored = new Set(read('.dockerignore').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#')));
  for (const entry of ['.rivulet', 'tls', '*.pem', '*.key', '.env', 'node_modules', 'dist', '.git']) assert.ok(ignored.has(entry), entry);
  // What the build needs must not be ignored.
  for (const needed of ['src', 'package.json', 'package-lock.json', 'tsconfig.json']) assert.ok(!ignored.has(needed), needed);
});

test('compose: builds the local image unless one is named, metrics reachable through the mapping, secrets required', () => {
  const engine = (YAML.parse(read('compose.yaml')) as { services: { engine: Record<string, unknown> } }).services.engine;
  assert.match(String(engine.image), /^\$\{RIVULET_IMAGE:-rivulet-local:/);
  assert.equal(engine.pull_policy, '${RIVULET_PULL_POLICY:-build}');
  const environment = engine.environment as Record<string, string>;
  assert.equal(environment.RSTREAM_ENGINE_METRICS__PROMETHEUS__LISTEN_ADDR, '0.0.0.0:9090');
  assert.match(environment.RSTREAM_ENGINE_METRICS__PROMETHEUS__BEARER_TOKEN!, /:\?/);
  assert.match(environment.RSTREAM_ENGINE_AUTH__JWT__TOKEN_JWT_SECRET!, /:\?/);
  assert.ok((engine.ports as string[]).includes('127.0.0.1:9090:9090/tcp'), 'metrics published on the host loopback only');
});
