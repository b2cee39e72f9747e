import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createDevCertificates } from '../src/certs/dev-ca.js';
import { CERT_CHECK_INTERVAL_MS } from '../src/threads/cert-check-gate.js';
import { servedFingerprint, sleep, startTestEngine, type TestEngine } from './helpers/engine.js';
import { devCertificates, tempDir } from './helpers/fixtures.js';

let t: TestEngine;
let dir: string;
before(async () => {
  dir = tempDir();
  t = await startTestEngine({}, await devCertificates('localhost', dir));
});
after(() => t.stop());

/** The operations recipe (docs/operations.md#rotate-certificates): write .new files beside the live ones, then rename them over. */
function rotate(certPem: string, keyPem: string): void {
  fs.writeFileSync(path.join(dir, 'cert.pem.new'), certPem, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'key.pem.new'), keyPem, { mode: 0o600 });
  fs.renameSync(path.join(dir, 'cert.pem.new'), t.certs.cert);
  fs.renameSync(path.join(dir, 'key.pem.new'), t.certs.key);
}

const afterGate = (): Promise<void> => sleep(CERT_CHECK_INTERVAL_MS + 150);

/**
 * Fresh handshakes in batches of 20 until both workers have served some (the kernel may hand a light
 * load to one worker only): every one of them sees `expected`.
 */
async function assertEveryWorkerServes(expected: string, ca: Buffer): Promise<void> {
  const before = [0, 1].map((worker) => t.engine.counters.row(worker).accepted_api);
  const served = (): number[] => [0, 1].map((worker) => t.engine.counters.row(worker).accepted_api - before[worker]!);
  for (let batch = 0; batch < 10 && !served().every((count) => count > 0); batch++) {
    const seen = await Promise.all(Array.from({ length: 20 }, () => servedFingerprint(t.engine.publicPort, ca)));
    assert.deepEqual(new Set(seen), new Set([expected]));
  }
  assert.ok(served().every((count) => count > 0), `both workers served: ${served().join(' / ')}`);
}

test('rotation by rename is served without a restart; invalid files keep the old pair', async () => {
  const original = await servedFingerprint(t.engine.publicPort, t.ca);
  assert.equal(original, t.engine.certificates.current.fingerprint256);

  // A valid new pair signed by another CA: the handshake that notices the change already gets it.
  const second = await createDevCertificates({ host: 'localhost', extraSans: [], days: 10 });
  rotate(second.leafCertPem, second.leafKeyPem);
  const ca2 = Buffer.from(second.caCertPem);
  await afterGate();
  const afterFirst = await servedFingerprint(t.engine.publicPort, ca2);
  assert.notEqual(afterFirst, original);
  assert.equal(afterFirst, t.engine.certificates.current.fingerprint256);
  assert.deepEqual(t.engine.certificates.reloads, { ok: 1, failed: 0 });
  await assertEveryWorkerServes(afterFirst, ca2);

  // A mismatched pair (third certificate, second key): logged, counted once, the second pair stays.
  const third = await createDevCertificates({ host: 'localhost', extraSans: [], days: 10 });
  rotate(third.leafCertPem, second.leafKeyPem);
  await afterGate();
  assert.equal(await servedFingerprint(t.engine.publicPort, ca2), afterFirst);
  await afterGate();
  assert.equal(await servedFingerprint(t.engine.publicPort, ca2), afterFirst);
  assert.deepEqual(t.engine.certificates.reloads, { ok: 1, failed: 1 }, 'the same broken files are not re-read');

  // Garbage in place of the certificate: still the second pair.
  fs.writeFileSync(path.join(dir, 'cert.pem.new'), 'not a certificate\n');
  fs.renameSync(path.join(dir, 'cert.pem.new'), t.certs.cert);
  await afterGate();
  assert.equal(await servedFingerprint(t.engine.publicPort, ca2), afterFirst);
  assert.deepEqual(t.engine.certificates.reloads, { ok: 1, failed: 2 });

  // A later valid pair, caught mid-rename (new certificate, old key): one failed attempt, then it lands.
  fs.writeFileSync(path.join(dir, 'cert.pem.new'), third.leafCertPem);
  fs.renameSync(path.join(dir, 'cert.pem.new'), t.certs.cert);
  await afterGate();
  assert.equal(await servedFingerprint(t.engine.publicPort, ca2), afterFirst);
  assert.deepEqual(t.engine.certificates.reloads, { ok: 1, failed: 3 });
  rotate(third.leafCertPem, third.leafKeyPem);
  await afterGate();
  const ca3 = Buffer.from(third.caCertPem);
  const afterThird = await servedFingerprint(t.engine.publicPort, ca3);
  assert.notEqual(afterThird, afterFirst);
  assert.deepEqual(t.engine.certificates.reloads, { ok: 2, failed: 3 });
  await assertEveryWorkerServes(afterThird, ca3);
});
