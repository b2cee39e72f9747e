import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { apiRequest } from './helpers/api-client.js';
import { startTestEngine, type TestEngine } from './helpers/engine.js';
import { mintToken } from './helpers/rstrm-agent.js';
import { VERSION } from '../src/version.js';

/** The dashboard's page and assets as the engine serves them (docs/engine-api.md#the-dashboard). */
describe('the dashboard, served', () => {
  let t: TestEngine;
  let port: number;

  before(async () => {
    t = await startTestEngine();
    port = t.engine.publicPort;
  });
  after(() => t.stop());

  test('/dashboard/: the page, revalidated each time, with a strict Content-Security-Policy; /dashboard redirects to it', async () => {
    const redirect = await apiRequest(port, t.ca, '/dashboard');
    assert.deepEqual([redirect.status, redirect.headers.location], [308, '/dashboard/']);
    const page = await apiRequest(port, t.ca, '/dashboard/');
    assert.equal(page.status, 200);
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(page.headers['cache-control'], 'no-cache');
    const csp = String(page.headers['content-security-policy']);
    for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) assert.ok(csp.includes(directive), csp);
    assert.ok(!csp.includes('unsafe'), csp);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.match(page.text, /<script type="module" src="assets\/[\w-]{22}\/app\.js"><\/script>/);
    assert.match(page.text, /<link rel="stylesheet" href="assets\/[\w-]{22}\/app\.css">/);
    const etag = String(page.headers.etag);
    const again = await apiRequest(port, t.ca, '/dashboard/', { headers: { 'if-none-match': etag } });
    assert.deepEqual([again.status, again.text], [304, '']);
  });

  test('assets: under their content hash, cached for good, 304 on a matching ETag; anything else 404', async () => {
    const page = await apiRequest(port, t.ca, '/dashboard/');
    const script = /src="(assets\/[^"]+)"/.exec(page.text)![1]!;
    const style = /href="(assets\/[^"]+)"/.exec(page.text)![1]!;
    for (const [asset, type] of [
      [script, 'text/javascript; charset=utf-8'],
      [style, 'text/css; charset=utf-8'],
    ] as const) {
      const reply = await apiRequest(port, t.ca, `/dashboard/${asset}`);
      assert.equal(reply.status, 200, asset);
      assert.equal(reply.headers['content-type'], type);
      assert.equal(reply.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.ok(reply.text.length > 500);
      const cached = await apiRequest(port, t.ca, `/dashboard/${asset}`, { headers: { 'if-none-match': String(reply.headers.etag) } });
      assert.equal(cached.status, 304);
    }
    assert.ok((await apiRequest(port, t.ca, `/dashboard/${script}`)).text.length > 5000, 'the whole bundle, past one cork buffer');
    for (const missing of ['/dashboard/assets/AAAAAAAAAAAAAAAAAAAAAA/app.js', '/dashboard/app.js', '/dashboard/../api/tunnels']) {
      assert.equal((await apiRequest(port, t.ca, missing)).status, 404, missing);
    }
  });

  test('GET /rivulet/v1/engine: version, runtime, workers, listener strategy, the certificate served; a token is needed', async () => {
    const refused = await apiRequest(port, t.ca, '/rivulet/v1/engine');
    assert.equal(refused.status, 401);
    const reply = await apiRequest(port, t.ca, '/rivulet/v1/engine', { token: await mintToken() });
    assert.equal(reply.status, 200);
    const info = reply.json() as Record<string, any>;
    assert.equal(info.version, VERSION);
    assert.equal(info.node, process.version);
    assert.equal(info.workers, 2);
    assert.ok(['reuse-port', 'shared-fd'].includes(info.listener_strategy));
    assert.ok(info.uptime_seconds >= 0 && Date.parse(info.started_at) <= Date.now());
    assert.match(info.certificate.subject_alt_name, /DNS:\*\.t\.localhost/);
    assert.ok(Date.parse(info.certificate.not_after) > Date.now());
  });

  test('the page is for the engine host only, like the API (421 for another name)', async () => {
    const reply = await apiRequest(port, t.ca, '/dashboard/', { headers: { host: 'elsewhere.example' } });
    assert.equal(reply.status, 421);
  });
});

describe('the dashboard, switched off', () => {
  test('dashboard.enabled: false: /dashboard/ is an unknown endpoint', async () => {
    const t = await startTestEngine({ dashboard: { enabled: false } });
    try {
      const reply = await apiRequest(t.engine.publicPort, t.ca, '/dashboard/');
      assert.equal(reply.status, 404);
      assert.equal((reply.json() as { error: string }).error, 'not_found');
    } finally {
      await t.stop();
    }
  });
});
