import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import * as errors from '../src/errors.js';

const DOC = fs.readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

/** Every exported error class, constructed with placeholder arguments. */
function everyError(): errors.RivuletError[] {
  return [
    new errors.ConfigError(['config error: engine.host: required']),
    new errors.CertificateError('certificate error'),
    new errors.ListenError('listen error'),
    new errors.WorkerListenFailure('tls', 443, 'EADDRINUSE'),
    new errors.UsageError('usage'),
    new errors.CommandError('command'),
    new errors.FilesExistError('exists'),
    new errors.EngineRefusal({ code: 1000, message: 'unauthorized' }),
    new errors.FrameError('frame'),
    new errors.DecodeError('decode'),
    new errors.ParamsError('params'),
    new errors.StreamFailure('timeout', 4000, 'timed out'),
  ];
}

test('every error code has one class, a row in docs/errors.md, and the exit status the row gives', () => {
  const made = everyError();
  assert.deepEqual(new Set(made.map((error) => error.code)), new Set(Object.keys(errors.ERROR_CODES)), 'one class per code');
  for (const error of made) {
    assert.ok(error instanceof Error && error instanceof errors.RivuletError);
    assert.equal(error.name, error.constructor.name, 'the name is the class');
    const row = DOC.split('\n').find((line) => line.startsWith(`| \`${error.code}\` |`));
    assert.ok(row, `docs/errors.md has a row for ${error.code}`);
    const [, , className, exit] = row.split('|').map((cell) => cell.trim());
    assert.equal(className, `\`${error.name}\``);
    if (exit !== '—') assert.equal(Number(exit), error.exitStatus, `${error.code} exits ${exit}`);
  }
  assert.equal(new errors.UsageError('x').exitStatus, 2);
});
