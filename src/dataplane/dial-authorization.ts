import { PERMISSIONS } from '../auth/permissions.js';
import { allows } from '../auth/tokens.js';
import { ErrorCode, type MessageOf, type RstrmError } from '../protocol/messages.js';
import type { CallResult } from '../threads/messages.js';
import type { RouteGroup } from './route-group.js';
import type { Dataplane } from './dataplane.js';

/**
 * Whether a StreamReq may dial its private tunnel, decided in the worker that received it from the
 * token's claims and this worker's route table (docs/protocol.md#a-private-dial); the main thread is
 * not asked. Checks in this order: token, permission, datagram channel, target given, a live private
 * tunnel of that id or name, engine not shutting down.
 */
export function authorizeDial(dataplane: Dataplane, request: MessageOf<'stream_req'>): CallResult<{ tunnels: RouteGroup }> {
  const check = dataplane.verifier.verify(request.client_details?.token);
  if (!check.ok) {
    dataplane.log.debug({ target: request.tunnel_id_name, reason: check.reason }, 'private dial refused: bad token');
    return refused(ErrorCode.Unauthorized, `invalid token: ${check.reason}`);
  }
  if (!allows(check.identity, PERMISSIONS.streamsCreateDelete)) {
    return refused(ErrorCode.Unauthorized, `permission denied: ${PERMISSIONS.streamsCreateDelete} required`);
  }
  if (request.datagram_channel === true) return refused(ErrorCode.FeatureNotAvailable, 'feature not available: datagram_channel');
  const target = request.tunnel_id_name;
  if (target === '') return refused(ErrorCode.InvalidRequest, 'tunnel_id_name is required');
  const tunnels = dataplane.dialTarget(target);
  if (!tunnels || tunnels.first?.properties.publish !== false) return refused(ErrorCode.TunnelNotFound, `tunnel "${target}" not found`);
  if (dataplane.shuttingDown) return refused(ErrorCode.ServiceUnavailable, 'engine is shutting down');
  return { ok: true, tunnels };
}

function refused(code: number, message: string): { ok: false; error: RstrmError } {
  return { ok: false, error: { code, message } };
}
