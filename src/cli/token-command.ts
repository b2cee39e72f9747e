import crypto from 'node:crypto';
import fs from 'node:fs';
import { SignJWT } from 'jose';
import { envNameForKey } from '../config/schema.js';
import { ALL_PERMISSIONS, PERMISSIONS, isPermission } from '../auth/permissions.js';
import { UsageError } from '../errors.js';

export interface TokenMintOptions {
  secret?: string;
  secretFile?: string;
  sub: string;
  ttl: string;
  permissions?: string;
  output: 'text' | 'json';
}

/** `rivulet token mint`: one HS256 engine token on stdout (docs/cli.md#rivulet-token-mint). */
export async function runTokenMintCommand(options: TokenMintOptions): Promise<void> {
  const secret = readSecret(options);
  const ttlSeconds = parseTtl(options.ttl);
  const permissions = parsePermissions(options.permissions);
  const now = Math.floor(Date.now() / 1000);
  // Only these claims, in this order: the JS SDK parses claims strictly.
  const claims: Record<string, unknown> = {
    type: 'auth',
    userId: options.sub,
    sub: options.sub,
    permissions,
    iat: now,
    ...(ttlSeconds > 0 ? { exp: now + ttlSeconds } : {}),
    jti: crypto.randomUUID(),
  };
  if (permissions?.length === 1 && permissions[0] === PERMISSIONS.resourcesReadOnly) {
    // Lets the JS Watch helper accept the token as a browser query token.
    claims.resources = { tunnels: { scopes: { tunnels: { list: true } } } };
  }
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(Buffer.from(secret, 'utf8'));
  process.stdout.write(options.output === 'json' ? JSON.stringify({ token, claims }) + '\n' : token + '\n');
}

function readSecret(options: TokenMintOptions): string {
  if (options.secret !== undefined && options.secretFile !== undefined) {
    throw new UsageError('use only one of --secret and --secret-file');
  }
  let secret = options.secret ?? process.env[envNameForKey('auth.jwt.token_jwt_secret')];
  if (options.secretFile !== undefined) {
    try {
      secret = fs.readFileSync(options.secretFile, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      throw new UsageError(`cannot read --secret-file: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  if (!secret) {
    throw new UsageError(
      `a signing secret is required: --secret, --secret-file or ${envNameForKey('auth.jwt.token_jwt_secret')}`,
    );
  }
  return secret;
}

const TTL_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** `90s`, `15m`, `24h`, `30d`, or `0` for a token without `exp`. */
export function parseTtl(text: string): number {
  if (text === '0') return 0;
  const match = /^(\d+)([smhd])$/.exec(text);
  if (!match || Number(match[1]) === 0) throw new UsageError(`invalid --ttl "${text}" (examples: 90s, 15m, 24h, 30d, 0)`);
  return Number(match[1]) * TTL_UNITS[match[2]!]!;
}

function parsePermissions(text: string | undefined): string[] | null {
  if (text === undefined) return null;
  const list = text.split(',').map((item) => item.trim()).filter((item) => item !== '');
  const unknown = list.filter((item) => !isPermission(item));
  if (unknown.length > 0) {
    throw new UsageError(`unknown permission "${unknown[0]}" (allowed: ${ALL_PERMISSIONS.join(', ')})`);
  }
  return list;
}
