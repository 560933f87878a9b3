import type { ConfigIssue, GatehouseError } from '../errors.js';
import type { RequestContext } from '../pipeline/context.js';
import type { AreaFactory, GatewayServices, RouteStages } from '../pipeline/runtime.js';
import type { RouteConfig } from '../config/types.js';
import type { ClaimRule } from './claims.js';
import { compileForwardClaims } from './forward-claims.js';
import { configIssue } from '../config/issue.js';
import { compileScopeCheck } from './scopes.js';
import { compileSenderCheck } from './sender.js';
import { compileStepUp } from './step-up.js';

/**
 * Authorization at the gateway (coarse-grained), per route, compiled once: the sender
 * constraint (401 `invalid_token` for a bearer token where `senderConstrained` asks for a bound
 * one), scopes (403
 * `insufficient_scope`), step-up (401 `insufficient_user_authentication`, RFC 9470), CEL claim
 * rules (403), then the `forwardClaims` headers for the upstream. A bad CEL expression is a
 * config issue with its file, line and key path.
 *
 * @example
 * ```ts
 * const area = await createAuthzArea(config, services);
 * if (area.issues?.length) throw new ConfigError(area.issues);
 * ```
 */
export const createAuthzArea: AreaFactory = async (config, services) => {
  const issues: ConfigIssue[] = [];
  // The CEL library (about 1.1 MB of V8 heap for the life of the process, marked by every full
  // collection) loads only for a config with claim rules.
  const cel = config.routes.some((route) => route.claims.length > 0) ? await import('./claims.js') : null;
  const compiled = config.routes.map((route, index) => compileRoute(route, index, services, cel, (keyPath, message) => issues.push(configIssue(config, keyPath, message))));
  return {
    name: 'authz',
    issues,
    stagesFor(route: RouteConfig, index: number): RouteStages {
      const stage = config.routes[index] === route ? compiled[index] : compileRoute(route, index, services, cel, () => undefined);
      return stage ? { authorize: stage } : {};
    },
  };
};

function compileRoute(
  route: RouteConfig,
  index: number,
  services: GatewayServices,
  cel: typeof import('./claims.js') | null,
  bad: (keyPath: (string | number)[], message: string) => void,
): ((ctx: RequestContext) => GatehouseError | null) | null {
  if (route.public) return null;
  const sender = compileSenderCheck(route.senderConstrained);
  const scopes = compileScopeCheck(route.scopes);
  const stepUp = compileStepUp(route.stepUp);
  let claims: ReturnType<typeof compileClaims> = null;
  if (route.claims.length > 0) {
    if (cel === null) throw new Error(`route ${route.name}: claim rules of a route outside the compiled config`);
    claims = compileClaims(cel, route, index, bad);
  }
  const forward = compileForwardClaims(route.forwardClaims);
  if (!sender && !scopes && !stepUp && !claims && !forward) return null;
  const now = services.now;
  /** Hot path: one call per configured check, no allocation when all pass. */
  return function authorize(ctx: RequestContext): GatehouseError | null {
    const principal = ctx.principal;
    if (principal === null) return null; // the runner refuses a protected route without a principal
    let denial: GatehouseError | null;
    if (sender !== null && (denial = sender(principal))) return denial;
    if (scopes !== null && (denial = scopes(principal))) return denial;
    if (stepUp !== null && (denial = stepUp(principal, now()))) return denial;
    if (claims !== null && (denial = claims(ctx, principal))) return denial;
    if (forward !== null) forward(principal, ctx.upstreamHeaders);
    return null;
  };
}

/** A route's claim rules, compiled with the CEL module; each bad expression is reported at its key. */
function compileClaims(cel: typeof import('./claims.js'), route: RouteConfig, index: number, bad: (keyPath: (string | number)[], message: string) => void) {
  const rules: ClaimRule[] = [];
  route.claims.forEach((c, j) => {
    const rule = cel.compileClaimRule(c.rule, c.message);
    if (typeof rule === 'string') {
      // `claims: [ "expr" ]` or `claims: [ { rule: "expr" } ]`
      bad(['routes', index, 'claims', j, ...(c.message !== undefined ? ['rule'] : [])], rule);
    } else rules.push(rule);
  });
  return cel.compileClaimCheck(rules);
}
