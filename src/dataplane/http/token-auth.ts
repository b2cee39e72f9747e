import { bearerToken } from '../../auth/bearer.js';
import type { IncomingHttpHeaders } from 'node:http';
import { TokenVerifier, type TokenFailure } from '../../auth/tokens.js';

const QUERY_PARAMETER = 'rstream.token';
/** Tokens that passed, kept so a keep-alive client's every request does not redo the HMAC. */
const CACHE_ENTRIES = 1024;
const CACHE_TTL_MS = 60_000;

export type TokenAuthResult =
  | { ok: true; dropAuthorization: boolean; path: string }
  | { ok: false; reason: TokenFailure };

/**
 * token_auth on published HTTP tunnels (docs/http-edge.md#decisions), checked in the worker: a Bearer header, else
 * the first `rstream.token` query parameter, validated as an engine JWT. What was consumed never goes
 * upstream: the Bearer header is dropped and every `rstream.token` parameter leaves the query.
 */
export class EdgeTokenAuth {
  private readonly verifier: TokenVerifier;
  /** token → until when (epoch ms) it is trusted without a new check. */
  private readonly passed = new Map<string, number>();

  constructor(secret: string) {
    this.verifier = new TokenVerifier(secret);
  }

  check(headers: IncomingHttpHeaders, path: string): TokenAuthResult {
    // A Bearer header is the proof whenever present, even a malformed one (which then fails).
    const bearer = /^bearer(?:\s|$)/i.test(headers.authorization ?? '');
    const token = bearer ? bearerToken(headers.authorization) : firstQueryToken(path);
    const failure = this.verify(token);
    if (failure) return { ok: false, reason: bearer && token === undefined ? 'malformed token' : failure };
    return { ok: true, dropAuthorization: bearer, path: withoutQueryTokens(path) };
  }

  private verify(token: string | undefined): TokenFailure | undefined {
    if (token !== undefined) {
      const until = this.passed.get(token);
      if (until !== undefined && until > Date.now()) return undefined;
    }
    const check = this.verifier.verify(token);
    if (!check.ok) return check.reason;
    this.remember(token!);
    return undefined;
  }

  private remember(token: string): void {
    if (this.passed.size >= CACHE_ENTRIES) this.passed.delete(this.passed.keys().next().value!);
    // A token with an exp is re-checked soon after it (the verifier applies the leeway).
    const exp = expiryOf(token);
    this.passed.set(token, Math.min(Date.now() + CACHE_TTL_MS, exp ?? Infinity));
  }
}

function firstQueryToken(path: string): string | undefined {
  const query = path.indexOf('?');
  if (query < 0) return undefined;
  for (const parameter of path.slice(query + 1).split('&')) {
    const equals = parameter.indexOf('=');
    if (parameterName(parameter) !== QUERY_PARAMETER) continue;
    try {
      return decodeURIComponent((equals < 0 ? '' : parameter.slice(equals + 1)).replace(/\+/g, ' '));
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Removes every `rstream.token` parameter; the others keep their order and bytes; `?` goes when nothing is left. */
export function withoutQueryTokens(path: string): string {
  const query = path.indexOf('?');
  if (query < 0) return path;
  const kept = path
    .slice(query + 1)
    .split('&')
    .filter((parameter) => parameterName(parameter) !== QUERY_PARAMETER);
  const rest = kept.join('&');
  return rest === '' ? path.slice(0, query) : `${path.slice(0, query)}?${rest}`;
}

/** A query parameter's name, percent-decoded (`rstream%2Etoken` is the same parameter). */
function parameterName(parameter: string): string {
  const equals = parameter.indexOf('=');
  const raw = equals < 0 ? parameter : parameter.slice(0, equals);
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

/** The exp claim in epoch ms, read without checking (the verifier already did). */
function expiryOf(token: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
