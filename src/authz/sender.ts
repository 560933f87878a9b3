import { bindingsOf, CERTIFICATE_BOUND, DPOP_BOUND } from '../authn/binding.js';
import { InvalidToken } from '../errors.js';
import type { Principal } from '../pipeline/context.js';

/**
 * A route's `senderConstrained` (`dpop`, `mtls` or `any`): only a token bound to its sender may
 * pass — DPoP-bound (`cnf.jkt`, RFC 9449), certificate-bound (`cnf.x5t#S256`, RFC 8705), or
 * either. A plain bearer token is refused with 401 `invalid_token`, in the DPoP scheme when a
 * DPoP binding would do (so the client learns it must use DPoP). Authentication has already
 * checked the binding itself on this request (the proof, or the certificate): this check only
 * asks that there is one. Returns null when the route has no `senderConstrained`.
 *
 * @example
 * ```ts
 * const check = compileSenderCheck('dpop');
 * const denial = check?.(principal) ?? null; // InvalidToken GH_ERR_AUTHZ_SENDER_CONSTRAINT_REQUIRED for a bearer token
 * ```
 */
export function compileSenderCheck(required: 'dpop' | 'mtls' | 'any' | undefined): ((principal: Principal) => InvalidToken | null) | null {
  if (required === undefined) return null;
  const dpop = required !== 'mtls';
  const accepted = (dpop ? DPOP_BOUND : 0) | (required !== 'dpop' ? CERTIFICATE_BOUND : 0);
  const wanted = required === 'dpop' ? 'a DPoP-bound token (cnf.jkt)' : required === 'mtls' ? 'a certificate-bound token (cnf.x5t#S256)' : 'a DPoP- or certificate-bound token';
  return function checkSenderConstrained(principal: Principal): InvalidToken | null {
    const cnf = principal.claims.cnf;
    if ((bindingsOf(cnf) & accepted) !== 0) return null;
    return new InvalidToken('GH_ERR_AUTHZ_SENDER_CONSTRAINT_REQUIRED', 'this route accepts only sender-constrained access tokens', {
      detail: `route requires ${wanted}; the token is ${cnf === undefined ? 'a bearer token' : `bound by ${Object.keys(cnf as object).join(', ') || 'nothing'}`}`,
      dpop,
    });
  };
}
