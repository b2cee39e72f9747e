import crypto from 'node:crypto';
import { TEST_SECRET } from './fixtures.js';
import { mintToken } from './rstrm-agent.js';

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A token over exactly these header and payload texts, signed with HS256 and `secret` (whatever the header says). */
function signed(header: unknown, payload: unknown, secret = TEST_SECRET): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const now = (): number => Math.floor(Date.now() / 1000);
const claims = { type: 'auth', sub: 'attacker' };

/** Tokens every surface must refuse: forged, expired, malformed or oversized. */
export const FORGED_TOKENS: Array<[string, () => Promise<string>]> = [
  ['alg none, no signature', async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`],
  ['HS512 header', async () => signed({ alg: 'HS512' }, claims)],
  ['RS256 header (algorithm confusion)', async () => signed({ alg: 'RS256' }, claims)],
  ['ES256 header', async () => signed({ alg: 'ES256' }, claims)],
  ['signed with another engine’s secret', async () => signed({ alg: 'HS256' }, claims, 'another-engine-secret-another-engine-secret')],
  ['expired', async () => signed({ alg: 'HS256' }, { ...claims, exp: now() - 120 })],
  ['nbf in the future', async () => signed({ alg: 'HS256' }, { ...claims, nbf: now() + 120 })],
  ['exp of 1e309', async () => signed({ alg: 'HS256' }, `{"type":"auth","sub":"attacker","exp":1e309}`)],
  ['exp as a string', async () => signed({ alg: 'HS256' }, { ...claims, exp: String(now() + 600) })],
  ['permissions of the wrong type', async () => signed({ alg: 'HS256' }, { ...claims, permissions: 'tunnels.resources.read-only' })],
  ['malformed base64url', async () => `${b64({ alg: 'HS256' })}.${b64(claims)}*!.${'A'.repeat(43)}`],
  ['a signature spelled with its unused bits set', async () => {
    const good = await mintToken();
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    return good.slice(0, -1) + alphabet[alphabet.indexOf(good.at(-1)!) ^ 1];
  }],
  ['a payload that is not JSON', async () => signed({ alg: 'HS256' }, 'not json')],
  ['9 KiB of claims (over the 8 KiB token limit)', async () => signed({ alg: 'HS256' }, { ...claims, pad: 'x'.repeat(9 * 1024) })],
  ['two segments', async () => `${b64({ alg: 'HS256' })}.${b64(claims)}`],
];
