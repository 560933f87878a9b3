import { InsufficientScope } from '../errors.js';
import type { Principal } from '../pipeline/context.js';

/**
 * Build the scope check of a route: every listed scope must be granted (from `scope` or `scp`).
 * Missing → 403 `insufficient_scope` with the route's scopes in the challenge (RFC 6750 §3.1).
 * Returns null when the route lists no scopes (the stage is skipped).
 *
 * @example
 * ```ts
 * const check = compileScopeCheck(['orders:read']);
 * const denial = check?.(principal) ?? null;
 * ```
 */
export function compileScopeCheck(required: readonly string[]): ((principal: Principal) => InsufficientScope | null) | null {
  if (required.length === 0) return null;
  const scopes = [...new Set(required)];
  return function checkScopes(principal: Principal): InsufficientScope | null {
    const granted = principal.scopes;
    for (let i = 0; i < scopes.length; i++) {
      if (!granted.has(scopes[i]!)) {
        return new InsufficientScope(scopes, { detail: `scope ${scopes[i]} is missing (granted: ${[...granted].join(' ') || 'none'})` });
      }
    }
    return null;
  };
}
