import { poolWeight } from '../protocol/pool-labels.js';
import type { TunnelRoute } from '../threads/messages.js';

const NOTHING_TO_END = (): void => {};

interface Member {
  route: TunnelRoute;
  weight: number;
  /** Streams (requests, connections, dials) this worker has on the member now. */
  active: number;
  /** Smooth weighted round-robin credit among members tied on load. */
  credit: number;
}

/**
 * The live tunnels behind one hostname or private name, as one worker sees them: a single tunnel, or
 * the members of an endpoint pool (docs/pools.md). Each new stream goes to the member with the fewest
 * active streams on this worker for its weight; ties go round by weight (smooth weighted round-robin),
 * so one client's requests one after another spread too. Members share the properties the edge
 * checks before choosing (the control plane makes sure), so `first` answers for all of them.
 */
export class RouteGroup {
  private readonly members: Member[] = [];

  /** A group of one, for a stream to that tunnel only (a private dial by tunnel id). */
  static of(route: TunnelRoute): RouteGroup {
    const group = new RouteGroup();
    group.add(route);
    return group;
  }

  get first(): TunnelRoute | undefined {
    return this.members[0]?.route;
  }

  get size(): number {
    return this.members.length;
  }

  add(route: TunnelRoute): void {
    this.members.push({ route, weight: poolWeight(route.properties.labels), active: 0, credit: 0 });
  }

  /** Removes a member; true when none is left. */
  remove(tunnelId: string): boolean {
    const index = this.members.findIndex((member) => member.route.tunnel_id === tunnelId);
    if (index >= 0) this.members.splice(index, 1);
    return this.members.length === 0;
  }

  /** The member a new stream goes to, leaving out those in `tried`; undefined when none is left. */
  choose(tried?: ReadonlySet<string>): TunnelRoute | undefined {
    if (this.members.length === 1) return tried?.has(this.members[0]!.route.tunnel_id) ? undefined : this.members[0]!.route;
    let least = Infinity;
    const tied: Member[] = [];
    for (const member of this.members) {
      if (tried?.has(member.route.tunnel_id)) continue;
      const load = member.active / member.weight;
      if (load < least) {
        least = load;
        tied.length = 0;
      }
      if (load === least) tied.push(member);
    }
    if (tied.length <= 1) return tied[0]?.route;
    let total = 0;
    let best = tied[0]!;
    for (const member of tied) {
      member.credit += member.weight;
      total += member.weight;
      if (member.credit > best.credit) best = member;
    }
    best.credit -= total;
    return best.route;
  }

  /**
   * A stream to `route` begins; the function returned ends it (once, however often it is called). A
   * lone tunnel has nothing to balance: its streams are not counted.
   */
  began(route: TunnelRoute): () => void {
    const member = this.members.length > 1 ? this.members.find((candidate) => candidate.route === route) : undefined;
    if (!member) return NOTHING_TO_END;
    member.active++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      member.active--;
    };
  }
}
