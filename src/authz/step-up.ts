import { StepUpRequired } from '../errors.js';
import type { Principal } from '../pipeline/context.js';

/** A route's `stepUp` section (maxAuthAge in ms). */
export interface StepUpPolicy {
  acr?: readonly string[];
  amr?: readonly string[];
  maxAuthAge?: number;
}

/**
 * Build the step-up check of a route (RFC 9470): `acr` must be one of the listed values, `amr`
 * must contain every listed method, `auth_time` must be no older than `maxAuthAge`. Failing →
 * 401 `insufficient_user_authentication` with `acr_values` and/or `max_age`, so the client can
 * re-authenticate. Returns null when the route has no `stepUp`.
 *
 * @example
 * ```ts
 * const check = compileStepUp({ acr: ['mfa'], maxAuthAge: 300_000 });
 * const denial = check?.(principal, Date.now()) ?? null;
 * ```
 */
export function compileStepUp(policy: StepUpPolicy | undefined): ((principal: Principal, now: number) => StepUpRequired | null) | null {
  if (!policy || (!policy.acr?.length && !policy.amr?.length && policy.maxAuthAge === undefined)) return null;
  const acr = policy.acr && policy.acr.length > 0 ? new Set(policy.acr) : null;
  const amr = policy.amr && policy.amr.length > 0 ? [...policy.amr] : null;
  const maxAuthAge = policy.maxAuthAge;
  const acrValues = acr ? [...acr] : undefined;
  const maxAgeSeconds = maxAuthAge === undefined ? undefined : Math.floor(maxAuthAge / 1000);
  const deny = (detail: string) => new StepUpRequired(acrValues, maxAgeSeconds, { detail });
  return function checkStepUp(principal: Principal, now: number): StepUpRequired | null {
    const claims = principal.claims;
    if (acr !== null) {
      const value = claims.acr;
      if (typeof value !== 'string' || !acr.has(value)) return deny(`acr ${JSON.stringify(value)} is not one of ${acrValues!.join(', ')}`);
    }
    if (amr !== null) {
      const value = claims.amr;
      if (!Array.isArray(value)) return deny(`amr ${value === undefined ? 'is missing' : 'is not an array'}; required: ${amr.join(', ')}`);
      for (let i = 0; i < amr.length; i++) if (!value.includes(amr[i])) return deny(`amr lacks ${amr[i]}`);
    }
    if (maxAuthAge !== undefined) {
      const authTime = claims.auth_time;
      if (typeof authTime !== 'number' || !Number.isFinite(authTime)) return deny('auth_time is missing');
      if (now - authTime * 1000 > maxAuthAge) return deny(`auth_time is ${Math.round((now - authTime * 1000) / 1000)}s ago; maxAuthAge is ${maxAgeSeconds}s`);
    }
    return null;
  };
}
