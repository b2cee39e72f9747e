import type { DevCertificateFiles } from '../src/certs/dev-ca.js';
import type { BenchChild } from './harness.js';
import { localTarget, startForwardAgent, startTwoHopRelay, tunnelTarget, type Target } from './load.js';
import { startLocaltunnel } from './localtunnel.js';

/**
 * The targets the tunnel is compared with, each started here (children join `children`): Rivulet's
 * tunnel through a new `rivulet forward` agent, the upstream directly over HTTPS, the two-hop Node TLS
 * relay, and localtunnel where it runs on this Node (`peerUnavailable` says why not).
 */
export async function comparisonTargets(
  certs: DevCertificateFiles,
  enginePort: number,
  upstream: { http: number; https: number },
  children: BenchChild[],
): Promise<{ targets: Target[]; peerUnavailable: string | undefined }> {
  children.push(await startForwardAgent(certs, enginePort, upstream.http, 'bench'));
  const relay = await startTwoHopRelay(certs, upstream.http);
  children.push(...relay.children);
  const peer = await startLocaltunnel(upstream.http);
  const targets: Target[] = [tunnelTarget('rivulet', 'bench', enginePort), localTarget('direct', upstream.https), localTarget('node relay', relay.port)];
  if ('unavailable' in peer) return { targets, peerUnavailable: peer.unavailable };
  children.push(...peer.children);
  targets.push(peer.target);
  return { targets, peerUnavailable: undefined };
}
