import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import 'reflect-metadata'; // @peculiar/x509's dependency injection needs it loaded first
import * as x509 from '@peculiar/x509';
import { FilesExistError } from '../errors.js';

/**
 * A local development CA and a server certificate signed by it (docs/cli.md#rivulet-certs-dev), ECDSA P-256.
 * Pure JavaScript (WebCrypto + @peculiar/x509) so it works wherever the engine runs, openssl or not.
 */

x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const CA_YEARS = 10;
const DAY_MS = 86_400_000;

export interface DevCertificateOptions {
  host: string;
  extraSans: readonly string[];
  outDir: string;
  days: number;
  force: boolean;
}

export interface DevCertificateFiles {
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
}

export function devCertificatePaths(outDir: string): DevCertificateFiles {
  return {
    caCert: path.join(outDir, 'ca.crt'),
    caKey: path.join(outDir, 'ca.key'),
    cert: path.join(outDir, 'cert.pem'),
    key: path.join(outDir, 'key.pem'),
  };
}

/** Writes ca.crt, ca.key (0600), cert.pem (leaf) and key.pem (0600) into `outDir`. */
export async function writeDevCertificates(options: DevCertificateOptions): Promise<DevCertificateFiles> {
  const files = devCertificatePaths(options.outDir);
  if (!options.force) {
    const existing = Object.values(files).filter((file) => fs.existsSync(file));
    if (existing.length > 0) {
      throw new FilesExistError(`refusing to overwrite ${existing.join(', ')} (use --force)`);
    }
  }
  const { caCertPem, caKeyPem, leafCertPem, leafKeyPem } = await createDevCertificates(options);
  fs.mkdirSync(options.outDir, { recursive: true, mode: 0o700 });
  writeFileWithMode(files.caCert, caCertPem, 0o644);
  writeFileWithMode(files.caKey, caKeyPem, 0o600);
  writeFileWithMode(files.cert, leafCertPem, 0o644);
  writeFileWithMode(files.key, leafKeyPem, 0o600);
  return files;
}

/** Replaces the file, so a key never sits in an older, more permissive file even for a moment. */
function writeFileWithMode(file: string, contents: string, mode: number): void {
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, contents, { mode, flag: 'wx' });
}

export async function createDevCertificates(options: Pick<DevCertificateOptions, 'host' | 'extraSans' | 'days'>) {
  const now = Date.now();
  const notBefore = new Date(now - 60_000); // tolerate small clock skew between hosts
  const caKeys = await crypto.webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const caName = `CN=Rivulet development CA (${options.host}), O=Rivulet development`;
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: caName,
    notBefore,
    notAfter: new Date(now + CA_YEARS * 365 * DAY_MS),
    keys: caKeys,
    signingAlgorithm: ECDSA_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const leafKeys = await crypto.webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const sans = [options.host, `*.t.${options.host}`, ...options.extraSans].map((name) => ({
    type: net.isIP(name) ? ('ip' as const) : ('dns' as const),
    value: name,
  }));
  const leafCert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${options.host}`,
    issuer: caCert.subject,
    notBefore,
    notAfter: new Date(now + options.days * DAY_MS),
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: ECDSA_P256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  return {
    caCertPem: caCert.toString('pem') + '\n',
    caKeyPem: await privateKeyPem(caKeys.privateKey),
    leafCertPem: leafCert.toString('pem') + '\n',
    leafKeyPem: await privateKeyPem(leafKeys.privateKey),
  };
}

async function privateKeyPem(key: crypto.webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', key));
  return crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** A positive 16-byte serial (high bit clear so DER keeps it positive). */
function randomSerial(): string {
  const bytes = crypto.randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}
