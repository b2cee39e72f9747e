import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { devCertificatePaths, writeDevCertificates } from '../certs/dev-ca.js';
import { envNameForKey } from './schema.js';

/** Where the development profile keeps its generated files, under the working directory. */
export const DEV_DIRECTORY = path.join('.rivulet', 'dev');

export interface DevProfile {
  /** The profile as a config tree; env overrides still apply on top (docs/configuration.md#the-development-profile). */
  tree: Record<string, unknown>;
  caFile: string;
  secretFile: string;
  /** What was created on this start, for the startup log. */
  created: string[];
}

/**
 * The embedded development profile used when no config file is given: localhost, TLS on
 * 127.0.0.1:8443, a dev CA and certificate and a JWT secret created on first start.
 */
export async function prepareDevProfile(cwd: string, env: NodeJS.ProcessEnv): Promise<DevProfile> {
  const directory = path.resolve(cwd, DEV_DIRECTORY);
  const files = devCertificatePaths(directory);
  const created: string[] = [];
  if (!fs.existsSync(files.cert) || !fs.existsSync(files.key)) {
    await writeDevCertificates({ host: 'localhost', extraSans: ['127.0.0.1', '::1'], outDir: directory, days: 365, force: true });
    created.push(files.caCert, files.cert, files.key);
  }
  const secretFile = path.join(directory, 'jwt-secret');
  let secret = env[envNameForKey('auth.jwt.token_jwt_secret')];
  if (!secret) {
    if (!fs.existsSync(secretFile)) {
      fs.mkdirSync(directory, { recursive: true, mode: 0o700 });
      fs.writeFileSync(secretFile, crypto.randomBytes(32).toString('base64url') + '\n', { mode: 0o600 });
      created.push(secretFile);
    }
    secret = fs.readFileSync(secretFile, 'utf8').trim();
  }
  return {
    tree: {
      engine: { host: 'localhost', log_level: 'info' },
      http: { enabled: false },
      tls: { enabled: true, listen_addr: '127.0.0.1:8443' },
      certs: { static: { enabled: true, cert_file: files.cert, key_file: files.key } },
      auth: { jwt: { enabled: true, token_jwt_secret: secret } },
      // Next to the TLS port, not Prometheus's own 9090, so a local Prometheus can scrape it.
      metrics: { prometheus: { enabled: true, listen_addr: '127.0.0.1:8444' } },
    },
    caFile: files.caCert,
    secretFile,
    created,
  };
}
