import { BlockList, isIP } from 'node:net';
import { RequestRejected } from '../errors.js';
import type { RequestContext, Stage } from '../pipeline/context.js';
import type { AreaFactory, RouteStages } from '../pipeline/runtime.js';
import type { RouteConfig } from '../config/types.js';
import { addEntry } from '../server/trusted-proxy.js';

/** Addresses remembered per route (a client's address repeats across its requests). */
const MEMO_SIZE = 4096;

/**
 * A set of IP addresses and CIDR ranges, asked per request. `BlockList.check` builds a
 * `SocketAddress` per call (about 1 µs), so answers are remembered per address, up to
 * {@link MEMO_SIZE} of them (then forgotten at once: the list never changes, only the memo).
 * IPv4 and IPv4-mapped IPv6 (`::ffff:10.1.2.3`) match each other's ranges.
 *
 * @example
 * ```ts
 * const office = createAddressSet(['10.0.0.0/8', '2001:db8::/32']);
 * office.has('10.1.2.3'); // true
 * office.has('not an address'); // false
 * ```
 */
export interface AddressSet {
  has(ip: string): boolean;
}

export function createAddressSet(entries: readonly string[]): AddressSet {
  const list = new BlockList();
  for (const entry of entries) addEntry(list, entry);
  let memo = new Map<string, boolean>();
  return {
    has(ip) {
      let inside = memo.get(ip);
      if (inside === undefined) {
        const family = isIP(ip);
        inside = family !== 0 && list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
        if (memo.size >= MEMO_SIZE) memo = new Map();
        memo.set(ip, inside);
      }
      return inside;
    },
  };
}

/**
 * A route's `allowFrom`: only clients whose address (the TCP peer's, or, behind a proxy listed
 * in `trustedProxies`, the one `X-Forwarded-For` names) lies in one of its addresses or ranges
 * may use the route. Anyone else gets 403 `GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED` before their token
 * is looked at (a pre-auth stage: no signature is checked, no limit counted for them); the log's
 * `detail` names the address and where it came from. Null when the route has no `allowFrom`.
 *
 * @example
 * ```ts
 * const stage = compileAllowFrom(route, 3); // route.allowFrom = ['10.0.0.0/8']
 * stage?.(ctx); // null for 10.1.2.3; a RequestRejected (403) for 203.0.113.9
 * ```
 */
export function compileAllowFrom(route: RouteConfig, index: number): Stage | null {
  const entries = route.allowFrom;
  if (entries === undefined || entries === null) return null;
  const allowed = createAddressSet(entries);
  const where = `routes[${index}].allowFrom`;
  return function checkClientAddress(ctx: RequestContext): RequestRejected | null {
    const ip = ctx.clientIp;
    if (allowed.has(ip)) return null;
    const source = ip !== ctx.peerIp ? `from X-Forwarded-For, via trusted proxy ${ctx.peerIp}` : ctx.peerTrusted ? 'the trusted proxy itself: X-Forwarded-For names no client address' : 'the TCP peer';
    return new RequestRejected('GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED', 403, 'this route cannot be used from this address', {
      detail: `client address ${ip || '(unknown)'} (${source}) is not in ${where} (route ${route.name})`,
    });
  };
}

/**
 * The network area: each route's `allowFrom` as a pre-auth stage. It runs before the pre-auth
 * limit and the token, so an address outside the list costs one set lookup.
 *
 * @example
 * ```ts
 * const area = await createNetworkArea(config, services);
 * area.stagesFor!(config.routes[0]!, 0); // { preAuth } when the route has allowFrom
 * ```
 */
export const createNetworkArea: AreaFactory = () => ({
  name: 'network',
  stagesFor(route: RouteConfig, index: number): RouteStages {
    const stage = compileAllowFrom(route, index);
    return stage ? { preAuth: stage } : {};
  },
});
