import { createRequire } from 'node:module';
import path from 'node:path';
import type * as UWS from '@trufflesuite/uws-js-unofficial';
import type { HttpResponse } from '@trufflesuite/uws-js-unofficial';

/**
 * Loads uWebSockets.js. It is not on the npm registry under its own name; two republishes carry its
 * prebuilt binaries. We load the native binary directly: the trufflesuite package would
 * otherwise fall back silently to a slow JavaScript imitation.
 */

export type Uws = typeof UWS;
export type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from '@trufflesuite/uws-js-unofficial';

interface UwsBuild {
  packageName: string;
  /** Directory of the binaries relative to the directory of the package's main file. */
  binaryDir: string;
  /** Node module ABI versions (process.versions.modules) the build ships binaries for. */
  abis: readonly number[];
  /** What the build needs beyond the ABI, for the error message. */
  note: string;
}

const BUILDS: readonly UwsBuild[] = [
  {
    packageName: '@btc-vision/uwebsockets.js',
    binaryDir: '.',
    abis: [115, 127, 137, 141],
    note: 'uWS v20.57, Node 20/22/24/25, glibc >= 2.38',
  },
  {
    packageName: '@trufflesuite/uws-js-unofficial',
    binaryDir: '../binaries',
    abis: [93, 108, 115],
    note: 'uWS v20.30, Node 16/18/20, glibc >= 2.31',
  },
];

let loaded: Uws | undefined;

/**
 * uWS reads its request-head limit from the environment when it loads: 4 KiB by default in the build for
 * Node >= 22 (a long token alone exceeds it). The workers already bound heads at 16 KiB before uWS sees
 * them (api-request-heads.ts), so uWS is told to take that much.
 */
const API_HEAD_LIMIT = String(16 * 1024);

export function loadUws(): Uws {
  if (loaded) return loaded;
  process.env.UWS_HTTP_MAX_HEADERS_SIZE ??= API_HEAD_LIMIT;
  const require = createRequire(import.meta.url);
  const abi = Number(process.versions.modules);
  const failures: string[] = [];
  for (const build of BUILDS) {
    if (!build.abis.includes(abi)) continue;
    try {
      const main = require.resolve(build.packageName);
      const file = path.join(path.dirname(main), build.binaryDir, `uws_${process.platform}_${process.arch}_${abi}.node`);
      loaded = require(file) as Uws;
      return loaded;
    } catch (error) {
      failures.push(`${build.packageName}: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  const supported = BUILDS.map((build) => `${build.packageName} (${build.note})`).join('; ');
  const tried = failures.length > 0 ? ` Tried: ${failures.join('; ')}.` : '';
  throw new Error(
    `uWebSockets.js has no build for Node ${process.version} (ABI ${abi}) on ${process.platform}-${process.arch}.` +
      ` Supported: ${supported}.${tried}`,
  );
}

/**
 * Ends a HEAD response: the head only, with the Content-Length the GET would have. uWS 20.30's
 * endWithoutBody(length) leaves the response unfinished (it waits for that many body bytes), and the
 * keep-alive connection is dropped before the next request; a Content-Length header of our own works
 * on both builds.
 */
export function endHead(res: HttpResponse, contentLength: number): void {
  res.writeHeader('content-length', String(contentLength)).endWithoutBody();
}
