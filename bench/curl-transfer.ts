import { runCommand } from './harness.js';
import type { Target } from './load.js';

/** One transfer with curl over HTTP/1.1; MB/s (10^6 bytes), checked for the full size. */
export async function curlTransfer(target: Target, caFile: string, direction: 'download' | 'upload', mib: number, uploadFile: string): Promise<number> {
  const size = mib * 1024 * 1024;
  // A stalled transfer fails after a generous bound (≥ 4 MB/s) instead of holding the suite for ever.
  const common = ['-sS', '--http1.1', '--max-time', String(Math.max(60, Math.ceil(mib / 4))), '--cacert', caFile, '--connect-to', `${target.host}:${target.dial.replace(/^https?:\/\//, '')}`];
  const url = `${target.url.replace('127.0.0.1', target.host.split(':')[0]!)}`;
  const output =
    direction === 'download'
      ? await runCommand('curl', [...common, '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', `${url}/bytes?n=${size}`])
      : await runCommand('curl', [...common, '-T', uploadFile, '-w', ' %{speed_upload} %{size_upload}', `${url}/upload`]);
  const fields = output.trim().split(/\s+/).map(Number);
  const [speed, moved] = fields.slice(-2) as [number, number];
  if (moved !== size || (direction === 'upload' && fields[0] !== size)) throw new Error(`${target.name} ${direction}: moved ${output.trim()} of ${size} bytes`);
  return Math.round((speed / 1e6) * 10) / 10;
}
