import type { CounterRow } from '../../threads/counters.js';
import type { TunnelRoute } from '../../threads/messages.js';
import type { RouteGroup } from '../route-group.js';
import type { EdgeErrorReason } from './generated-response.js';
import type { TunnelUpstreams } from './upstream-pool.js';

/** Failures of a stream request that another member of an endpoint pool may not share. */
const FAILS_OVER: ReadonlySet<EdgeErrorReason> = new Set(['agent_refused', 'agent_timeout', 'agent_gone', 'upstream_tls']);

/**
 * The upstream pool one HTTP request uses: that of the member its hostname's group chooses (docs/pools.md),
 * then, when that member fails the request before anything went downstream, another member's. It
 * holds the request's place in its member's active count until `done`.
 */
export class UpstreamChoice {
  pool: TunnelUpstreams;
  private member: TunnelRoute;
  private ended: () => void;
  private readonly tried = new Set<string>();

  constructor(
    private readonly group: RouteGroup,
    first: TunnelRoute,
    private readonly poolOf: (route: TunnelRoute) => TunnelUpstreams,
    private readonly counters: CounterRow,
  ) {
    this.member = first;
    this.pool = poolOf(first);
    this.ended = group.began(first);
  }

  /** The slot of the member serving the request (its traffic row). */
  get slot(): number {
    return this.member.slot;
  }

  /**
   * After the current member failed the request with `reason` (or, with no reason, its stream closed
   * before a response to a request safe to repeat): the next member's pool, or undefined when the
   * failure is not one to fail over on or no member is left.
   */
  next(reason?: EdgeErrorReason): TunnelUpstreams | undefined {
    if (reason !== undefined && !FAILS_OVER.has(reason)) return undefined;
    this.tried.add(this.member.tunnel_id);
    const member = this.group.choose(this.tried);
    if (!member) return undefined;
    this.ended();
    this.member = member;
    this.pool = this.poolOf(member);
    this.ended = this.group.began(member);
    this.counters.add('pool_failovers');
    return this.pool;
  }

  /** The request is over. */
  done(): void {
    this.ended();
  }
}
