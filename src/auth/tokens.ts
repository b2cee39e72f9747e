import crypto from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import { type Permission } from './permissions.js';

/**
 * Engine token validation (docs/threat-model.md), the same on every surface: HS256 only, the signature an
 * HMAC-SHA256 checked here with node:crypto, then the claim rules (30 s leeway on exp/nbf, tokens without
 * exp accepted, iat ignored, permissions null or a string array). Synchronous: the Engine API must
 * answer a WebSocket upgrade within uWS's upgrade handler (docs/engine-api.md#decisions).
 */

export interface Identity {
  user_id: string;
  /** `auth`, `app`, `pat`, or absent: for logs only. */
  type: string | undefined;
  /** null: full access; an array: only what it lists (unknown strings are kept and ignored). */
  permissions: string[] | null;
}

export type TokenCheck = { ok: true; identity: Identity } | { ok: false; reason: TokenFailure };

export type TokenFailure =
  | 'missing token'
  | 'malformed token'
  | 'unsupported alg'
  | 'bad signature'
  | 'expired'
  | 'not yet valid';

const MAX_TOKEN_BYTES = 8 * 1024;
const LEEWAY_SECONDS = 30;

export class TokenVerifier {
  private readonly key: Uint8Array;

  constructor(secret: string) {
    this.key = Buffer.from(secret, 'utf8');
  }

  verify(token: string | undefined, now = Date.now() / 1000): TokenCheck {
    if (!token) return { ok: false, reason: 'missing token' };
    const segments = token.split('.');
    if (token.length > MAX_TOKEN_BYTES || segments.length !== 3) return { ok: false, reason: 'malformed token' };
    const [headerText, payloadText, signatureText] = segments as [string, string, string];
    // The signature is the one part the signature does not cover: a variant spelling of its last
    // character (unused low bits) would decode to the same bytes and pass as another valid token.
    if (!isCanonicalBase64url(signatureText) || !BASE64URL.test(payloadText)) return { ok: false, reason: 'malformed token' };
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      return { ok: false, reason: 'malformed token' };
    }
    if (header.alg !== 'HS256') return { ok: false, reason: 'unsupported alg' };
    // Extensions a verifier must understand (RFC 7515 crit, RFC 7797's unencoded payload) are not ours.
    if (header.crit !== undefined || header.b64 !== undefined) return { ok: false, reason: 'malformed token' };
    const expected = crypto.createHmac('sha256', this.key).update(`${headerText}.${payloadText}`).digest();
    const given = Buffer.from(signatureText, 'base64url');
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return { ok: false, reason: 'bad signature' };
    const payloadBytes = Buffer.from(payloadText, 'base64url');
    let claims: unknown;
    try {
      claims = JSON.parse(payloadBytes.toString('utf8'));
    } catch {
      return { ok: false, reason: 'malformed token' };
    }
    if (!claims || typeof claims !== 'object' || Array.isArray(claims)) return { ok: false, reason: 'malformed token' };
    const c = claims as Record<string, unknown>;
    // A date must be a finite number: JSON's 1e309 parses as Infinity, which would never expire.
    if (c.exp !== undefined && (!Number.isFinite(c.exp) || now > (c.exp as number) + LEEWAY_SECONDS)) {
      return { ok: false, reason: Number.isFinite(c.exp) ? 'expired' : 'malformed token' };
    }
    if (c.nbf !== undefined && (!Number.isFinite(c.nbf) || now < (c.nbf as number) - LEEWAY_SECONDS)) {
      return { ok: false, reason: Number.isFinite(c.nbf) ? 'not yet valid' : 'malformed token' };
    }
    const permissions = c.permissions;
    if (
      permissions !== undefined &&
      permissions !== null &&
      !(Array.isArray(permissions) && permissions.every((item) => typeof item === 'string'))
    ) {
      return { ok: false, reason: 'malformed token' };
    }
    const userId = [c.userId, c.sub, c.clientId].find((value) => typeof value === 'string' && value !== '');
    return {
      ok: true,
      identity: {
        user_id: (userId as string | undefined) ?? 'anonymous',
        type: typeof c.type === 'string' ? c.type : undefined,
        permissions: (permissions as string[] | null | undefined) ?? null,
      },
    };
  }
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

function isCanonicalBase64url(text: string): boolean {
  return Buffer.from(text, 'base64url').toString('base64url') === text;
}

/** null permissions mean full access; an array grants only what it lists (no implication). */
export function allows(identity: Pick<Identity, 'permissions'>, permission: Permission): boolean {
  return identity.permissions === null || identity.permissions.includes(permission);
}
