import tls from 'node:tls';

/** Go CLI (IANA) cipher names → OpenSSL names. */
const IANA_CIPHERS: Record<string, string> = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
};
const OPENSSL_CIPHERS = new Set(tls.getCiphers().map((name) => name.toLowerCase()));

/** The OpenSSL name of a cipher given by its IANA or OpenSSL name, or undefined if unknown. */
export function opensslCipherName(name: string): string | undefined {
  const iana = IANA_CIPHERS[name.toUpperCase()];
  if (iana) return iana;
  return OPENSSL_CIPHERS.has(name.toLowerCase()) ? name.toUpperCase() : undefined;
}
