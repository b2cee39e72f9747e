import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { writeDevCertificates, type DevCertificateFiles } from '../../src/certs/dev-ca.js';

export const TEST_SECRET = 'test-secret-that-is-at-least-32-bytes-long';

export function tempDir(prefix = 'rivulet-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A real dev CA + server certificate for `host` (and 127.0.0.1), generated now. */
export async function devCertificates(host = 'localhost', dir = tempDir()): Promise<DevCertificateFiles> {
  return writeDevCertificates({ host, extraSans: ['127.0.0.1'], outDir: dir, days: 30, force: true });
}

/** A complete, valid config tree on an ephemeral port; `overrides` are merged per section. */
export function configTree(
  certs: Pick<DevCertificateFiles, 'cert' | 'key'>,
  overrides: Record<string, Record<string, unknown>> = {},
): Record<string, unknown> {
  const base: Record<string, Record<string, unknown>> = {
    engine: { host: 'localhost', log_level: 'error' },
    tls: { enabled: true, listen_addr: '127.0.0.1:0' },
    certs: { static: { enabled: true, cert_file: certs.cert, key_file: certs.key } },
    auth: { jwt: { enabled: true, token_jwt_secret: TEST_SECRET } },
  };
  for (const [section, values] of Object.entries(overrides)) base[section] = { ...base[section], ...values };
  return base;
}

export function writeConfig(tree: unknown, dir = tempDir()): string {
  const file = path.join(dir, 'engine.yaml');
  fs.writeFileSync(file, typeof tree === 'string' ? tree : YAML.stringify(tree));
  return file;
}
