import { compactVerify, decodeProtectedHeader, errors } from 'jose';
import { type Permission } from './permissions.js';

/**
 * Engine token validation (docs/threat-model.md), the same on every surface: HS256 only, signature checked
 * by jose, then the claim rules checked here (30 s leeway on exp/nbf,
 * tokens without exp accepted, iat ignored, permissions null or a string array).
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

  async verify(token: string | undefined, now = Date.now() / 1000): Promise<TokenCheck> {
    if (!token) return { ok: false, reason: 'missing token' };
    const segments = token.split('.');
    if (token.length > MAX_TOKEN_BYTES || segments.length !== 3) return { ok: false, reason: 'malformed token' };
    // The signature is the one part the signature does not cover: a variant spelling of its last
    // character (unused low bits) would decode to the same bytes and pass as another valid token.
    if (!isCanonicalBase64url(segments[2]!)) return { ok: false, reason: 'malformed token' };
    try {
      if (decodeProtectedHeader(token).alg !== 'HS256') return { ok: false, reason: 'unsupported alg' };
    } catch {
      return { ok: false, reason: 'malformed token' };
    }
    let payloadBytes: Uint8Array;
    try {
      ({ payload: payloadBytes } = await compactVerify(token, this.key, { algorithms: ['HS256'] }));
    } catch (error) {
      if (error instanceof errors.JWSSignatureVerificationFailed) return { ok: false, reason: 'bad signature' };
      return { ok: false, reason: 'malformed token' };
    }
    let claims: unknown;
    try {
      claims = JSON.parse(Buffer.from(payloadBytes).toString('utf8'));
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

function isCanonicalBase64url(text: string): boolean {
  return Buffer.from(text, 'base64url').toString('base64url') === text;
}

/** null permissions mean full access; an array grants only what it lists (no implication). */
export function allows(identity: Pick<Identity, 'permissions'>, permission: Permission): boolean {
  return identity.permissions === null || identity.permissions.includes(permission);
}
