import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import tls from 'node:tls';
import { CertificateError } from '../errors.js';

/** A validated certificate chain and its key, as PEM text plus what operators need to see in logs. */
export interface CertificatePair {
  certPem: string;
  keyPem: string;
  subject: string;
  notAfter: Date;
  fingerprint256: string;
  subjectAltName: string;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/**
 * Reads both files and checks that they form a usable pair: a PEM chain whose first certificate
 * is the leaf, a private key in PKCS#8, PKCS#1 or SEC1 PEM, and the key matching the leaf.
 */
export async function loadCertificatePair(certFile: string, keyFile: string): Promise<CertificatePair> {
  const certPem = await readText('certs.static.cert_file', certFile);
  const keyPem = await readText('certs.static.key_file', keyFile);
  return parseCertificatePair(certPem, keyPem, certFile, keyFile);
}

export function parseCertificatePair(
  certPem: string,
  keyPem: string,
  certFile: string,
  keyFile: string,
): CertificatePair {
  const leafPem = PEM_CERTIFICATE.exec(certPem)?.[0];
  if (!leafPem) throw certificateError('certs.static.cert_file', certFile, 'no PEM certificate found');
  let leaf: crypto.X509Certificate;
  try {
    leaf = new crypto.X509Certificate(leafPem);
  } catch (error) {
    throw certificateError('certs.static.cert_file', certFile, `not a valid certificate (${(error as Error).message})`);
  }
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(keyPem);
  } catch {
    throw certificateError('certs.static.key_file', keyFile, 'not a PEM private key (PKCS#8, PKCS#1 or SEC1)');
  }
  if (!leaf.checkPrivateKey(key)) {
    throw certificateError('certs.static.key_file', keyFile, 'private key does not match certificate');
  }
  try {
    tls.createSecureContext({ cert: certPem, key: keyPem });
  } catch (error) {
    throw certificateError('certs.static.cert_file', certFile, `unusable for TLS (${(error as Error).message})`);
  }
  return {
    certPem,
    keyPem,
    subject: leaf.subject.replace(/\n/g, ', '),
    notAfter: new Date(leaf.validTo),
    fingerprint256: leaf.fingerprint256,
    subjectAltName: leaf.subjectAltName ?? '',
  };
}

async function readText(key: string, file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw certificateError(key, file, `cannot read file (${code})`);
  }
}

function certificateError(key: string, file: string, problem: string): CertificateError {
  return new CertificateError(`certificate error: ${key} "${file}": ${problem}`);
}

const EXPIRY_WARNING_MS = 14 * 86_400_000;

/** Non-fatal findings at load time: missing names, expired or expiring soon. */
export function certificateWarnings(pair: CertificatePair, engineHost: string, now = Date.now()): string[] {
  const warnings: string[] = [];
  const x509 = new crypto.X509Certificate(PEM_CERTIFICATE.exec(pair.certPem)![0]);
  for (const name of [engineHost, `probe.t.${engineHost}`]) {
    if (!x509.checkHost(name, { wildcards: true, subject: 'default' })) {
      const shown = name.startsWith('probe.') ? `*.t.${engineHost}` : name;
      warnings.push(`certificate does not cover ${shown}`);
    }
  }
  const remaining = pair.notAfter.getTime() - now;
  if (remaining <= 0) warnings.push(`certificate expired on ${pair.notAfter.toISOString()}`);
  else if (remaining < EXPIRY_WARNING_MS) warnings.push(`certificate expires soon (${pair.notAfter.toISOString()})`);
  return warnings;
}
