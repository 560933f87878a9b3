import { RequestRejected } from '../errors.js';
import type { RequestContext, Stage } from '../pipeline/context.js';
import type { AreaFactory, RouteStages } from '../pipeline/runtime.js';
import type { RouteConfig } from '../config/types.js';
import { createAddressSet } from '../server/addresses.js';

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
