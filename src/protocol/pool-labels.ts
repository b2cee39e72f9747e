/**
 * Rivulet's endpoint pools ride on tunnel labels, which every rstream client can already set
 * (docs/pools.md): the pool a tunnel joins, its weight, and what the engine echoes back.
 */

/** The pool key: tunnels of one hostname (or private name) that carry the same value share it. */
export const POOL_LABEL = 'rivulet.pool';
/** A member's share of new streams, 1–100 (default 1). */
export const POOL_WEIGHT_LABEL = 'rivulet.pool.weight';
/** Echoed in OpenTunnelRsp only (not stored): how many members the pool has with this one. */
export const POOL_MEMBERS_LABEL = 'rivulet.pool.members';

export const POOL_KEY = /^[A-Za-z0-9._-]{1,64}$/;
export const MAX_POOL_WEIGHT = 100;

/** A member's weight from its (validated) labels. */
export function poolWeight(labels: Readonly<Record<string, string>>): number {
  const weight = Number(labels[POOL_WEIGHT_LABEL] ?? 1);
  return Number.isInteger(weight) && weight >= 1 && weight <= MAX_POOL_WEIGHT ? weight : 1;
}
