import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { jwtVerify, decodeProtectedHeader } from 'jose';
import { tempDir } from './helpers/fixtures.js';
import { runCli } from './helpers/process.js';

const openssl = (...args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8' });

describe('rivulet certs dev', () => {
  test('writes a CA and a P-256 leaf for H and *.t.H that openssl verifies', async () => {
    const out = path.join(tempDir(), 'tls');
    const result = await runCli(['certs', 'dev', '--host', 'Edge.Test', '--san', '127.0.0.1', '--san', 'extra.test', '--out', out, '--days', '30']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /NODE_EXTRA_CA_CERTS=/);
    for (const [file, mode] of [['ca.crt', 0o644], ['ca.key', 0o600], ['cert.pem', 0o644], ['key.pem', 0o600]] as const) {
      assert.equal(fs.statSync(path.join(out, file)).mode & 0o777, mode, file);
    }
    const cert = path.join(out, 'cert.pem');
    assert.match(openssl('verify', '-CAfile', path.join(out, 'ca.crt'), '-purpose', 'sslserver', cert), /cert\.pem: OK/);
    const text = openssl('x509', '-in', cert, '-noout', '-text');
    assert.match(text, /DNS:edge\.test, DNS:\*\.t\.edge\.test, IP Address:127\.0\.0\.1, DNS:extra\.test/);
    assert.match(text, /ASN1 OID: prime256v1/);
    assert.match(text, /TLS Web Server Authentication/);
    assert.match(openssl('x509', '-in', path.join(out, 'ca.crt'), '-noout', '-text'), /CA:TRUE/);
    const days = (Date.parse(openssl('x509', '-in', cert, '-noout', '-enddate').split('=')[1]!) - Date.now()) / 86_400_000;
    assert.ok(days > 29 && days <= 30, `leaf valid for ${days} days`);
    assert.match(openssl('pkey', '-in', path.join(out, 'key.pem'), '-noout', '-text'), /prime256v1/);

    const again = await runCli(['certs', 'dev', '--host', 'edge.test', '--out', out]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /refusing to overwrite .*--force/);
    const forced = await runCli(['certs', 'dev', '--host', 'edge.test', '--out', out, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
  });

  test('--host is required (usage error, exit 2)', async () => {
    assert.equal((await runCli(['certs', 'dev'])).code, 2);
  });
});

describe('rivulet token mint', () => {
  const secret = 'mint-test-secret-0123456789-0123456789';

  test('signs HS256 with the documented claims, from --secret-file', async () => {
    const file = path.join(tempDir(), 'secret');
    fs.writeFileSync(file, secret + '\n');
    const result = await runCli(['token', 'mint', '--secret-file', file, '--sub', 'ops', '--ttl', '15m']);
    assert.equal(result.code, 0, result.stderr);
    const token = result.stdout.trim();
    assert.equal(decodeProtectedHeader(token).alg, 'HS256');
    const { payload } = await jwtVerify(token, Buffer.from(secret), { algorithms: ['HS256'] });
    assert.deepEqual(Object.keys(payload), ['type', 'userId', 'sub', 'permissions', 'iat', 'exp', 'jti']);
    assert.equal(payload.type, 'auth');
    assert.equal(payload.userId, 'ops');
    assert.equal(payload.sub, 'ops');
    assert.equal(payload.permissions, null);
    assert.equal(payload.exp! - payload.iat!, 900);
  });

  test('a read-only token carries the list scope; --ttl 0 has no exp; -o json shows the claims', async () => {
    const result = await runCli(['token', 'mint', '--permissions', 'tunnels.resources.read-only', '--ttl', '0', '-o', 'json'], {
      env: { RSTREAM_ENGINE_AUTH__JWT__TOKEN_JWT_SECRET: secret },
    });
    assert.equal(result.code, 0, result.stderr);
    const { token, claims } = JSON.parse(result.stdout) as { token: string; claims: Record<string, unknown> };
    const { payload } = await jwtVerify(token, Buffer.from(secret));
    assert.deepEqual(payload, claims);
    assert.equal(payload.exp, undefined);
    assert.deepEqual(payload.permissions, ['tunnels.resources.read-only']);
    assert.deepEqual(payload.resources, { tunnels: { scopes: { tunnels: { list: true } } } });
  });

  test('usage errors exit 2: no secret, two secrets, unknown permission, bad ttl', async () => {
    assert.equal((await runCli(['token', 'mint'])).code, 2);
    assert.equal((await runCli(['token', 'mint', '--secret', 'a', '--secret-file', '/dev/null'])).code, 2);
    const unknown = await runCli(['token', 'mint', '--secret', secret, '--permissions', 'webtty.all']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown permission "webtty\.all"/);
    assert.equal((await runCli(['token', 'mint', '--secret', secret, '--ttl', '5 minutes'])).code, 2);
  });
});

test('every command’s --help (the built binary) ends with two or three examples and says each default once', async () => {
  const commands = [['engine'], ['certs', 'dev'], ['token', 'mint'], ['forward'], ['nc'], ['tunnel', 'list'], ['client', 'list'], ['events']];
  for (const command of commands) {
    const { code, stdout } = await runCli([...command, '--help']);
    assert.equal(code, 0, command.join(' '));
    const examples = /\nExamples:\n((?: {2}.+\n)+)\n?$/.exec(stdout);
    assert.ok(examples, `${command.join(' ')} --help ends without examples:\n${stdout}`);
    const lines = examples[1]!.trimEnd().split('\n');
    assert.ok(lines.length >= 2 && lines.length <= 3, `${command.join(' ')}: ${lines.length} examples`);
    assert.ok(lines.some((line) => line.includes(`rivulet ${command.join(' ')}`)), `${command.join(' ')}: no example runs it`);
    assert.doesNotMatch(stdout, /\(default\)\s*\(default:/, `${command.join(' ')} says a default twice`);
  }
});
