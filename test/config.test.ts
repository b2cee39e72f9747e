import assert from 'node:assert/strict';
import fs from 'node:fs';
import { before, describe, test } from 'node:test';
import { buildConfig, readConfigFile } from '../src/config/load.js';
import { isLoopbackHost, parseListenAddress } from '../src/config/address.js';
import { configTree, devCertificates, writeConfig } from './helpers/fixtures.js';
import type { DevCertificateFiles } from '../src/certs/dev-ca.js';
import { ConfigError } from '../src/errors.js';

let certs: DevCertificateFiles;
before(async () => {
  certs = await devCertificates();
});

function errorsOf(tree: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    buildConfig(tree, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.lines;
  }
  assert.fail('expected a config error');
}

describe('config validation names the key', () => {
  test('a minimal CE config loads with the documented defaults', () => {
    const { config } = buildConfig(configTree(certs), {});
    assert.equal(config.engine.host, 'localhost');
    assert.equal(config.http.enabled, false);
    assert.equal(config.metrics.prometheus.enabled, false);
    assert.equal(config.metrics.prometheus.path, '/metrics');
    assert.equal(config.timeouts.stream_request_seconds, 30);
    assert.equal(config.timeouts.http_idle_seconds, 90);
    assert.equal(config.timeouts.http_request_body_idle_seconds, 60);
    assert.equal(config.dataplane.max_tunnels_per_client, 0);
    assert.equal(config.dataplane.max_streams_per_tunnel, 10_000);
    // Sized for the machine: below its open-file limit, and never unlimited by default.
    const openFiles = Number(/Max open files\s+(\d+)/.exec(fs.readFileSync('/proc/self/limits', 'utf8'))?.[1]);
    assert.ok(config.dataplane.max_connections > 0 && config.dataplane.max_connections < openFiles, String(config.dataplane.max_connections));
    assert.equal(config.dataplane.affinity.advertise_host, undefined, 'unset (the engine then advertises engine.host)');
    assert.ok(config.dataplane.workers >= 1);
  });

  test('dashboard.request_log: off by default; on/off from YAML (quoted or read as booleans) and the environment; anything else named', () => {
    assert.equal(buildConfig(configTree(certs), {}).config.dashboard.request_log, false);
    for (const [value, expected] of [['on', true], ['off', false], [true, true], [false, false]] as const) {
      assert.equal(buildConfig(configTree(certs, { dashboard: { request_log: value } }), {}).config.dashboard.request_log, expected, String(value));
    }
    assert.equal(buildConfig(configTree(certs), { RSTREAM_ENGINE_DASHBOARD__REQUEST_LOG: 'ON' }).config.dashboard.request_log, true);
    assert.deepEqual(errorsOf(configTree(certs, { dashboard: { request_log: 'all' } })), ['config error: dashboard.request_log: must be one of off, on']);
  });

  test('missing required keys', () => {
    const tree = configTree(certs);
    delete (tree.engine as Record<string, unknown>).host;
    delete tree.auth;
    assert.deepEqual(errorsOf(tree), [
      'config error: engine.host: required',
      'config error: auth.jwt.enabled: required',
      'config error: auth.jwt.token_jwt_secret: required',
    ]);
  });

  for (const host of ['https://edge.example.com', 'edge.example.com:443', 'edge.example.com/x', '10.0.0.1', 'a..b', '999.1.1.1', '1.2.3']) {
    test(`engine.host "${host}" is refused`, () => {
      assert.deepEqual(errorsOf(configTree(certs, { engine: { host } })), [
        'config error: engine.host: must be a bare DNS name without scheme or port',
      ]);
    });
  }

  test('engine.host is lowercased and loses a trailing dot', () => {
    assert.equal(buildConfig(configTree(certs, { engine: { host: 'Edge.Example.COM.' } }), {}).config.engine.host, 'edge.example.com');
  });

  test('unknown keys, at any depth', () => {
    const tree = configTree(certs, { tls: { listen_address: '[::]:443' } });
    tree.extra = { a: 1 };
    assert.deepEqual(errorsOf(tree), ['config error: unknown key "tls.listen_address"', 'config error: unknown key "extra"']);
  });

  test('all problems at once: unknown keys, bad values and rules between keys', () => {
    const tree = configTree(certs, { engine: { log_level: 'loud' }, tls: { enabled: false } });
    tree.foo = 1;
    assert.deepEqual(errorsOf(tree), [
      'config error: unknown key "foo"',
      'config error: engine.log_level: must be one of debug, info, warn, error',
      'config error: tls.enabled: must be true (the TLS listener is required)',
    ]);
    const scalarSection = configTree(certs);
    scalarSection.engine = 5;
    assert.deepEqual(errorsOf(scalarSection), [
      'config error: engine: expected a mapping',
      'config error: engine.host: required',
    ]);
  });

  test('a bad log_level', () => {
    assert.deepEqual(errorsOf(configTree(certs, { engine: { log_level: 'verbose' } })), [
      'config error: engine.log_level: must be one of debug, info, warn, error',
    ]);
  });

  for (const key of ['tls.enabled', 'certs.static.enabled', 'auth.jwt.enabled']) {
    test(`${key}: false is refused`, () => {
      const tree = configTree(certs);
      const path = key.split('.');
      let node = tree as Record<string, Record<string, unknown>>;
      for (const part of path.slice(0, -1)) node = node[part] as Record<string, Record<string, unknown>>;
      (node as Record<string, unknown>)[path.at(-1)!] = false;
      const lines = errorsOf(tree);
      assert.equal(lines.length, 1);
      assert.match(lines[0]!, new RegExp(`^config error: ${key.replace(/\./g, '\\.')}: must be true`));
    });
  }

  test('a non-loopback metrics listener needs a bearer token; loopback does not', () => {
    assert.deepEqual(errorsOf(configTree(certs, { metrics: { prometheus: { enabled: true, listen_addr: '0.0.0.0:9090' } } })), [
      'config error: metrics.prometheus.bearer_token: required when listen_addr is not a loopback address',
    ]);
    const ok = configTree(certs, { metrics: { prometheus: { enabled: true, listen_addr: '[::1]:9090', path: 'm' } } });
    assert.equal(buildConfig(ok, {}).config.metrics.prometheus.path, '/m');
  });

  test('conditional requirements and types', () => {
    const tree = configTree(certs, {
      http: { enabled: true },
      timeouts: { http_idle_seconds: 0, stream_request_seconds: 'soon' },
      dataplane: { workers: 300, affinity: { enabled: true } },
    });
    assert.deepEqual(errorsOf(tree), [
      'config error: timeouts.stream_request_seconds: expected integer >= 1',
      'config error: timeouts.http_idle_seconds: expected integer >= 1',
      'config error: dataplane.workers: expected integer between 1 and 256',
      'config error: http.listen_addr: required when http.enabled is true',
      'config error: dataplane.affinity.port_base: required when affinity is enabled',
    ]);
    assert.deepEqual(
      errorsOf(configTree(certs, { dataplane: { affinity: { enabled: true, port_base: 20000, advertise_host: 'http://x:1' } } })),
      ['config error: dataplane.affinity.advertise_host: must be a DNS name or an IP address'],
    );
    const conditional = configTree(certs, {
      http: { enabled: 'yes' },
      metrics: { prometheus: { enabled: true } },
      dataplane: { affinity: { enabled: true } },
    });
    assert.deepEqual(errorsOf(conditional), [
      'config error: http.listen_addr: required when http.enabled is true',
      'config error: metrics.prometheus.listen_addr: required when metrics are enabled',
      'config error: dataplane.affinity.port_base: required when affinity is enabled',
    ]);
    assert.deepEqual(errorsOf(configTree(certs, { tls: { listen_addr: '443' } })), [
      'config error: tls.listen_addr: expected host:port',
    ]);
  });

  test('YAML null means "not set"', () => {
    const tree = configTree(certs, { http: { enabled: null, listen_addr: null } });
    tree.metrics = null;
    assert.equal(buildConfig(tree, {}).config.http.enabled, false);
  });

  test('a YAML syntax error names the file, line and column', () => {
    const file = writeConfig('engine:\n  host: [unclosed\n');
    assert.throws(() => readConfigFile(file), (error: ConfigError) => {
      assert.match(error.lines[0]!, new RegExp(`^config error: "${file}":\\d+:\\d+: invalid YAML`));
      return true;
    });
    assert.throws(() => readConfigFile('/nonexistent/engine.yaml'), /cannot read config file "\/nonexistent\/engine.yaml"/);
  });
});

describe('environment overrides', () => {
  test('override nested keys, booleans and integers, and beat the file', () => {
    const { config, warnings } = buildConfig(configTree(certs, { engine: { host: 'file.example.com' } }), {
      RSTREAM_ENGINE_ENGINE__HOST: 'env.example.com',
      RSTREAM_ENGINE_HTTP__ENABLED: 'Yes',
      RSTREAM_ENGINE_HTTP__LISTEN_ADDR: '[::]:80',
      RSTREAM_ENGINE_TIMEOUTS__HTTP_IDLE_SECONDS: '15',
      RSTREAM_ENGINE_DATAPLANE__AFFINITY__ENABLED: '0',
      RSTREAM_ENGINE_METRICS__PROMETHEUS__BEARER_TOKEN: 'scrape-token',
    });
    assert.equal(config.engine.host, 'env.example.com');
    assert.equal(config.http.enabled, true);
    assert.deepEqual(config.http.listen_addr, { host: '::', port: 80 });
    assert.equal(config.timeouts.http_idle_seconds, 15);
    assert.equal(config.dataplane.affinity.enabled, false);
    assert.equal(config.metrics.prometheus.bearer_token, 'scrape-token');
    assert.deepEqual(warnings, []);
  });

  test('a bad override value is an error naming the key', () => {
    assert.deepEqual(errorsOf(configTree(certs), { RSTREAM_ENGINE_DATAPLANE__WORKERS: 'many' }), [
      'config error: dataplane.workers: expected integer between 1 and 256',
    ]);
    assert.deepEqual(errorsOf(configTree(certs), { RSTREAM_ENGINE_HTTP__ENABLED: 'maybe' }), [
      'config error: http.enabled: expected boolean (true/false/yes/no/1/0)',
    ]);
  });

  test('unknown overrides warn and are ignored; RSTREAM_ENGINE and _CONFIG are not overrides', () => {
    const { warnings } = buildConfig(configTree(certs), {
      RSTREAM_ENGINE_ADDRESS: 'edge:443',
      RSTREAM_ENGINE: 'edge:443',
      RSTREAM_ENGINE_CONFIG: '/etc/rivulet.yaml',
    });
    assert.deepEqual(warnings, ['ignoring environment variable RSTREAM_ENGINE_ADDRESS: no config key "address"']);
  });

  test('a secret shorter than 32 bytes is refused, naming the key and not echoing it', () => {
    const errors = errorsOf(configTree(certs, { auth: { jwt: { enabled: true, token_jwt_secret: 'short-secret' } } }));
    assert.deepEqual(errors, ['config error: auth.jwt.token_jwt_secret: must be at least 32 bytes (generate one: openssl rand -hex 32)']);
  });

  test('engine.log_level defaults to info: a minimal config needs no engine section but the host', () => {
    const tree = configTree(certs);
    delete (tree.engine as Record<string, unknown>).log_level;
    assert.equal(buildConfig(tree, {}).config.engine.log_level, 'info');
  });
});

test('listen addresses and loopback detection', () => {
  assert.deepEqual(parseListenAddress('[::]:443'), { host: '::', port: 443 });
  assert.deepEqual(parseListenAddress('localhost:0'), { host: 'localhost', port: 0 });
  assert.equal(parseListenAddress('[::1]:70000'), undefined);
  assert.equal(parseListenAddress('::1:80'), undefined);
  for (const host of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1', 'localhost']) assert.ok(isLoopbackHost(host), host);
  for (const host of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '::ffff:10.0.0.1']) assert.ok(!isLoopbackHost(host), host);
});
