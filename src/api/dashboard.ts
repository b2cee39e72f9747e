import crypto from 'node:crypto';
import fs from 'node:fs';
import { endBody, type EngineApi } from './engine-api.js';
import type { HttpResponse, TemplatedApp } from './uws.js';

/** Where `npm run build` puts the page (dashboard/build.mjs), relative to this module in dist/src/api/. */
const BUILT_PAGE = new URL('../../dashboard/', import.meta.url);
export const DASHBOARD_PATH = '/dashboard/';

/**
 * The page may load its own script and stylesheet and talk to its own origin, nothing else: no inline
 * code, no other origin, not framed. The token it holds is worth keeping to itself.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Array<[string, string]> = [
  ['content-security-policy', CONTENT_SECURITY_POLICY],
  ['x-content-type-options', 'nosniff'],
  ['referrer-policy', 'no-referrer'],
  ['x-frame-options', 'DENY'],
];

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  /** Under a content-hashed path: cached for a year. The page itself is revalidated each time. */
  immutable: boolean;
}

/**
 * The web dashboard, served from the engine's own build on the API's host (docs/engine-api.md#the-dashboard):
 * `index.html` at /dashboard/, its script and stylesheet under /dashboard/assets/<content hash>/ so a
 * browser caches them for good and a new build is a new URL. Everything else the page shows comes from
 * the Engine API and the stats stream, with the token the operator typed.
 */
export class Dashboard {
  private readonly assets = new Map<string, Asset>();

  constructor(private readonly api: EngineApi) {
    const hashed = new Map<string, string>();
    for (const name of ['app.js', 'app.css']) {
      const body = fs.readFileSync(new URL(name, BUILT_PAGE));
      const hash = digest(body);
      hashed.set(name, `assets/${hash}/${name}`);
      this.assets.set(`${DASHBOARD_PATH}assets/${hash}/${name}`, { body, type: typeOf(name), etag: `"${hash}"`, immutable: true });
    }
    const html = fs.readFileSync(new URL('index.html', BUILT_PAGE), 'utf8').replace(/%(app\.(?:js|css))%/g, (_, name: string) => hashed.get(name)!);
    const page = Buffer.from(html);
    this.assets.set(DASHBOARD_PATH, { body: page, type: TYPES['.html']!, etag: `"${digest(page)}"`, immutable: false });
  }

  register(app: TemplatedApp): void {
    app.any('/dashboard', (res, req) => {
      const request = this.api.readRequest(req);
      if (!this.api.precheck(res, request)) return;
      request.answered(308);
      res.writeStatus('308 Permanent Redirect').writeHeader('location', DASHBOARD_PATH).endWithoutBody();
    });
    app.any('/dashboard/*', (res, req) => {
      const request = this.api.readRequest(req);
      const ifNoneMatch = req.getHeader('if-none-match');
      if (!this.api.precheck(res, request)) return;
      const asset = this.assets.get(request.url);
      if (!asset) {
        request.answered(404);
        res.writeStatus('404 Not Found').writeHeader('content-type', 'text/plain; charset=utf-8');
        writeSecurityHeaders(res).end('not found\n');
        return;
      }
      const fresh = ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === asset.etag);
      request.answered(fresh ? 304 : 200);
      res.writeStatus(fresh ? '304 Not Modified' : '200 OK');
      res.writeHeader('etag', asset.etag).writeHeader('cache-control', asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
      writeSecurityHeaders(res);
      if (fresh) res.endWithoutBody();
      else endBody(res.writeHeader('content-type', asset.type), request, asset.body);
    });
  }
}

function writeSecurityHeaders(res: HttpResponse): HttpResponse {
  for (const [name, value] of SECURITY_HEADERS) res.writeHeader(name, value);
  return res;
}

function digest(body: Buffer): string {
  return crypto.createHash('sha256').update(body).digest('base64url').slice(0, 22);
}

function typeOf(name: string): string {
  return TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream';
}
